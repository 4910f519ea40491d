"""The models package: every public name resolves, and importing one model module loads only that one."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import vobiz_provider.models as models


@pytest.mark.parametrize("name", models.__all__)
def test_every_public_name_is_the_submodule_object(name: str) -> None:
    module = importlib.import_module(f"vobiz_provider.models.{models._MODULE_OF[name]}")
    assert getattr(models, name) is getattr(module, name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="MakeCallReqest"):
        models.MakeCallReqest  # noqa: B018


def test_importing_the_request_model_does_not_build_the_response_and_callback_models() -> None:
    code = (
        "import json, sys\n"
        "from vobiz_provider.models import MakeCallRequest\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vobiz_provider.models'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == ["vobiz_provider.models", "vobiz_provider.models.call"]
