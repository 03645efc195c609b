#!/usr/bin/env bash
# Release check: build the wheel and sdist, `twine check` them, make sure they hold only
# the app (the sdist also README, LICENSE, CHANGELOG and packaging metadata), then
# install the wheel into a fresh virtualenv and use the app from there.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" release

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

.venv/bin/python -m build --outdir "$out/dist" . >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
.venv/bin/twine check --strict "$out"/dist/*

.venv/bin/python - "$out"/dist/*.whl "$out"/dist/*.tar.gz <<'PY'
import re
import sys
import tarfile
import zipfile

wheel, sdist = sys.argv[1:]
wheel_names = zipfile.ZipFile(wheel).namelist()
with tarfile.open(sdist) as archive:
    sdist_names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]

allowed_wheel = re.compile(r"rotating_tokens/|django_rotating_tokens-[^/]+\.dist-info/")
allowed_sdist = re.compile(
    r"rotating_tokens(/|$)|django_rotating_tokens\.egg-info(/|$)"
    r"|(README\.md|LICENSE|CHANGELOG\.md|pyproject\.toml|setup\.cfg|PKG-INFO|MANIFEST\.in)$"
)
stray = [n for n in wheel_names if not allowed_wheel.match(n)]
stray += [n for n in sdist_names if not allowed_sdist.match(n)]
if stray:
    sys.exit("Not part of the app: " + ", ".join(stray))
for needed in ("rotating_tokens/py.typed", "rotating_tokens/migrations/0001_initial.py"):
    if needed not in wheel_names:
        sys.exit(f"The wheel lacks {needed}")
if "CHANGELOG.md" not in sdist_names:
    sys.exit("The sdist lacks CHANGELOG.md")
print(f"{len(wheel_names)} files in the wheel, {len(sdist_names)} in the sdist: only the app.")
PY

# A fresh virtualenv outside the checkout, so that nothing is imported from the sources.
.venv/bin/python -m venv "$out/venv"
"$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$out"/dist/*.whl
cd "$out"
"$out/venv/bin/python" - <<'PY'
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="check-dist-" + "x" * 40,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "rest_framework",
        "rotating_tokens",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    ROOT_URLCONF="rotating_tokens.urls",
    ROTATING_TOKENS={"TRANSPORT": "body", "REVOCATION_PUSH": None},
)
django.setup()

from django.core.management import call_command

import rotating_tokens
from rotating_tokens import services, urls, views  # noqa: F401

assert "site-packages" in rotating_tokens.__file__, rotating_tokens.__file__
from importlib.metadata import version

# One version: the wheel's metadata says what the package says (and tests/test_version.py
# ties that to the CHANGELOG's newest entry).
assert version("django-rotating-tokens") == rotating_tokens.__version__, (
    version("django-rotating-tokens"),
    rotating_tokens.__version__,
)
call_command("migrate", verbosity=0)
call_command("check", fail_level="ERROR")
print(f"rotating_tokens {rotating_tokens.__version__} installs and migrates from the wheel.")
PY
