# Sourced by scripts/test, scripts/demo and scripts/bench: makes sure the project's virtualenv exists and
# holds the provider (editable) with its test extras. Sets $venv and $venv_bin. pip's output goes to
# $venv/pip-install.log and is shown only when the install fails.
venv=${VOBIZ_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! {
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
} >"$venv/pip-install.log" 2>&1; then
  cat "$venv/pip-install.log" >&2
  echo "could not install the provider into $venv (log above: $venv/pip-install.log)" >&2
  exit 1
fi
venv_bin=$(cd "$venv/bin" && pwd)
