#!/usr/bin/env bash
# Set up and run the demo on http://127.0.0.1:8000 (SQLite). Log in as demo / demo-password.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" example
export ACCESS_TOKEN_SECONDS=${ACCESS_TOKEN_SECONDS:-20}
# New-device and stolen-token e-mails, printed on this console.
export NOTICE_EMAILS=${NOTICE_EMAILS:-1}
.venv/bin/python manage.py migrate --noinput
echo "Demo on http://127.0.0.1:8000/ — log in as demo / demo-password (admin at /admin/)."
exec .venv/bin/python manage.py runserver 127.0.0.1:8000
