"""The models package: importing one model module loads only that one (DAG-parse cost, benchmark B4)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_the_request_model_does_not_build_the_response_and_callback_models() -> None:
    code = (
        "import json, sys\n"
        "from vobiz_provider.models.call import MakeCallRequest\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vobiz_provider.models'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == ["vobiz_provider.models", "vobiz_provider.models.call"]
