"""The account endpoints of the emulator's REST API: CDRs, concurrency and ``/auth/me``."""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

from vobiz_provider.testing.emulator.api_common import Endpoints
from vobiz_provider.testing.emulator.payloads import api_id, cdr

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["AccountEndpoints"]


class AccountEndpoints(Endpoints):
    """The ``/Account/{auth_id}/cdr/``, ``/Account/{auth_id}/concurrency/`` and ``/auth/me`` handlers.

    :param switchboard: The account the API serves.
    """

    async def list_cdrs(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /cdr/``: the CDRs of ended calls, newest first, filtered and paginated."""
        settings = self.switchboard.settings
        query = request.query_params
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "20"))
            min_duration = int(query["min_duration"]) if "min_duration" in query else None
        except ValueError:
            return self.error(400, "page, per_page and min_duration must be integers")
        if page < 1 or not 1 <= per_page <= 100:
            return self.error(400, "page must be >= 1 and per_page between 1 and 100")
        if ("start_date" in query) != ("end_date" in query):
            return self.error(400, "start_date and end_date must be sent together")
        cdrs = [cdr(c, settings) for c in self.switchboard.calls.values() if c.finished]
        cdrs.sort(key=lambda r: (r["end_time"] or "", r["id"] or 0), reverse=True)
        for name in ("to_number", "from_number"):
            wanted = query.get(name)
            if wanted:
                key = "destination_number" if name == "to_number" else "caller_id_number"
                cdrs = [r for r in cdrs if wanted.lstrip("+") in str(r[key])]
        for name in ("call_direction", "hangup_cause", "hangup_disposition", "sip_call_id", "context"):
            if query.get(name):
                cdrs = [r for r in cdrs if str(r.get(name)) == query[name]]
        if min_duration is not None:
            cdrs = [r for r in cdrs if r["duration"] >= min_duration]
        if "start_date" in query:
            start, end = query["start_date"], query["end_date"]
            cdrs = [r for r in cdrs if start <= (r["start_time"] or "")[:10] <= end]
        total = len(cdrs)
        pages = max(1, math.ceil(total / per_page)) if total else 0
        chunk = cdrs[(page - 1) * per_page : page * per_page]
        answered = [r for r in cdrs if r["answer_time"]]
        total_duration = sum(r["duration"] for r in cdrs)
        return JSONResponse(
            {
                "account_id": settings.auth_id,
                "count": len(chunk),
                "data": chunk,
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "total": total,
                    "pages": pages,
                    "has_next": page < pages,
                    "has_prev": page > 1,
                },
                "summary": {
                    "totalCalls": total,
                    "answeredCalls": len(answered),
                    "answerRate": round(100 * len(answered) / total, 2) if total else 0,
                    "avgCallDuration": f"{round(total_duration / total) if total else 0}s",
                    "total_duration_seconds": total_duration,
                    "total_billable_seconds": sum(r["billsec"] for r in cdrs),
                    "total_cost": f"{sum(float(r['total_cost']) for r in cdrs):.5f}",
                    "last_call_at": cdrs[0]["end_time"] if cdrs else None,
                },
                "success": True,
            }
        )

    async def get_cdr(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /cdr/{uuid}/``: the CDR of one ended call."""
        call = self._find(params["call_uuid"])
        if call is None or not call.finished:
            return self.error(404, "CDR not found", flat_extra={"success": False})
        return JSONResponse({"data": cdr(call, self.switchboard.settings), "success": True})

    async def concurrency(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /concurrency/``: calls not yet ended against the limit."""
        settings = self.switchboard.settings
        current = len(self.switchboard.active_calls())
        return JSONResponse(
            {
                "account_id": settings.auth_id,
                "concurrent_calls": current,
                "max_concurrent": settings.concurrency,
                "utilization_pct": round(100 * current / settings.concurrency, 2),
                "request_id": f"req_{uuid.uuid4().hex[:12]}",
            }
        )

    async def auth_me(self, request: Request, params: dict[str, str]) -> Response:
        """``GET /auth/me``: the account, its limits and its pricing."""
        settings = self.switchboard.settings
        kind = "sub_account" if settings.auth_id.startswith("SA_") else "main_account"
        return JSONResponse(
            {
                "type": kind,
                "id": settings.auth_id,
                "api_id": api_id(),
                "name": "Vobiz Emulator",
                "email": "emulator@example.invalid",
                "phone": "+14155550100",
                "description": "local Vobiz emulator account",
                "auth_id": settings.auth_id,
                "auth_secret": settings.auth_token,
                "auth_token_expire_time": None,
                "country": "IN",
                "timezone": settings.timezone,
                "city": "Mumbai",
                "state": "MH",
                "address": "",
                "zip_code": "",
                "company": "Emulator",
                "account_type": "standard",
                "postpaid": False,
                "auto_recharge": False,
                "auto_recharge_config": None,
                "enabled": True,
                "carrier_type": "retail",
                "customer_type": "business",
                "credit_limit": 0,
                "cps_limit": settings.cps,
                "concurrent_calls_limit": settings.concurrency,
                "base_cps_limit": settings.cps,
                "base_concurrent_calls_limit": settings.concurrency,
                "purchased_cps": 0,
                "purchased_concurrent_calls": 0,
                "risk_rating": "low",
                "risk_status": "clear",
                "features": {"call_queue": True},
                "ip_auth_enabled": False,
                "ip_whitelist_rules": [],
                "allow_aws_ips": True,
                "role": "owner",
                "is_active": True,
                "is_verified": True,
                "is_trial_account": False,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
                "last_login": None,
                "pricing_tier_id": 1,
                "pricing_tier": {
                    "id": 1,
                    "name": "Standard",
                    "description": "emulator pricing",
                    "currency": settings.currency,
                    "rate_per_minute": settings.rate_per_minute,
                    "billing_increment_seconds": settings.billing_pulse,
                    "minimum_duration_seconds": settings.billing_pulse,
                    "is_active": True,
                    "is_default": True,
                },
            }
        )
