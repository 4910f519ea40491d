"""Debian's nginx in front of both callback receivers: the public ``callback_base_url`` of the cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["nginx_binary", "write_nginx_conf"]

_NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/nginx.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;   # callback URLs carry correlation tokens (docs/deployment.md)
    client_body_temp_path {home}/nginx-tmp/body;
    proxy_temp_path {home}/nginx-tmp/proxy;
    fastcgi_temp_path {home}/nginx-tmp/fastcgi;
    uwsgi_temp_path {home}/nginx-tmp/uwsgi;
    scgi_temp_path {home}/nginx-tmp/scgi;
    upstream vobiz_receivers {{
        server 127.0.0.1:{receiver_port} max_fails=1 fail_timeout=5s;   # vobiz-callbacks serve
        server 127.0.0.1:{api_port} max_fails=1 fail_timeout=5s;        # the plugin in airflow api-server
    }}
    server {{
        listen 127.0.0.1:{port};
        client_header_timeout 5s;
        client_body_timeout 5s;
        keepalive_timeout 5s;
        send_timeout 5s;
        large_client_header_buffers 4 80k;
        location /vobiz/ {{
            proxy_pass http://vobiz_receivers;   # the path and query unchanged
            client_max_body_size 64k;
            proxy_request_buffering on;
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
            # A receiver that is down (refused, reset, 502/503): the request goes to the other one.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
        }}
        location = /nginx-health {{ return 200 "ok"; }}
    }}
}}
"""


def write_nginx_conf(home: Path, ports: dict[str, int]) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (home / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = home / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            home=home, port=ports["nginx"], receiver_port=ports["receiver"], api_port=ports["api"]
        )
    )
    return conf


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is not installed: run scripts/ci-cluster-deps (apt-get install nginx)")
    return found
