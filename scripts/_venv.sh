# Sourced by scripts/test, scripts/demo and scripts/bench: makes sure the project's virtualenv exists and
# holds the provider (editable) with its test extras. Sets $venv.
venv=${VOBIZ_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
venv_bin=$(cd "$venv/bin" && pwd)
