#!/usr/bin/env bash
# Set up and run the whole test suite. SQLite by default; DATABASE_URL=postgres://…
# or mysql://… runs it on that server. Extra arguments go to pytest (and then only the
# main suite runs); without any, two suites with settings of their own run after it:
# the django-allauth integration (tests/contrib_allauth) and a project with a custom
# user model whose SIMPLE_JWT USER_ID_FIELD is not the pk (tests/custom_user).
set -euo pipefail
bash "$(dirname "$0")/system-deps.sh"
. "$(dirname "$0")/_venv.sh" test
case "${DATABASE_URL:-}" in
  mysql*) .venv/bin/python -c 'import MySQLdb' 2>/dev/null || .venv/bin/python -m pip install --quiet -e ".[mariadb]" ;;
esac
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
fi
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}"
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" \
  --ds=tests.contrib_allauth.settings tests/contrib_allauth
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" \
  --ds=tests.custom_user.settings tests/custom_user
