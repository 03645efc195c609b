# Sourced by the scripts: make .venv with Python 3.10+ and install the project into it.
# Usage: . scripts/_venv.sh EXTRAS   (e.g. "example" or "test")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "Python 3.10 or newer is needed (set PYTHON=/path/to/python3.x)." >&2; exit 1; }
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$1-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]"
  touch "$stamp"
fi
