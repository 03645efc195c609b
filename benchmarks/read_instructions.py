"""The authenticated read in instructions: this app against simplejwt, counted by
valgrind, which a shared machine's noise does not move.

    .venv/bin/python benchmarks/read_instructions.py [--database-url postgres://…/db]
        [--settings example_project.settings …] [--requests 1000]

Each project (``example_project`` with ``AccessTokenAuthentication``, the benchmark's
simplejwt project with its stateless ``JWTAuthentication``) runs in a process of its
own under ``valgrind --tool=callgrind``: it migrates a fresh database, logs a user in,
sends ``GET /api/me/`` through its WSGI handler 500 times to warm up, then N more
times. Run once with N = 0 and once with N = ``--requests``, the difference divided by N
is the instructions one request costs the Python process (the database server's work is
not counted: it is the same query on both sides). ``--settings`` adds settings modules
to compare (a variant of the example project, say).

Needs valgrind (``apt-get install valgrind``) and, for PostgreSQL, a server where the
script may create and drop the databases ``bench_instr_*`` (``--pg``); without
``--database-url`` the projects run on SQLite files in a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = {
    "example_project.settings": "/api/auth/token/",
    "benchmarks.simplejwt_peer.settings": "/api/token/",
}
USERNAME, PASSWORD = "bench", "bench-password-1234"


def child(login_path: str, requests: int) -> None:
    """Inside valgrind: set up, warm up, then ``requests`` authenticated reads."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.test import Client

    call_command("migrate", verbosity=0)
    get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    answer = Client().post(
        login_path, {"username": USERNAME, "password": PASSWORD}, content_type="application/json"
    )
    access = answer.json()["access"]
    application = get_wsgi_application()

    def read() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/api/me/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": f"Bearer {access}",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
        }
        statuses: list[str] = []
        body = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(body)
        body.close()
        if not statuses[0].startswith("200"):
            raise SystemExit(f"GET /api/me/ answered {statuses[0]}")

    for _ in range(500):
        read()
    for _ in range(requests):
        read()


def counted(settings: str, requests: int, args: argparse.Namespace, folder: str) -> int:
    """Instructions of a whole run of ``child`` under callgrind."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key-not-for-production-0123456789",
        "DJANGO_PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
        "LOGIN_THROTTLE_RATE": "",
        "REFRESH_THROTTLE_RATE": "",
        "CACHE_DIR": tempfile.mkdtemp(dir=folder),
        "DATABASE_URL": fresh_database(args, settings, folder),
    }
    env.pop("REDIS_URL", None)  # the file cache: no other process in the count
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder}/callgrind.%p",
            sys.executable,
            __file__,
            "--child",
            PROJECTS.get(settings, "/api/auth/token/"),
            str(requests),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode or not found:
        raise SystemExit(f"{settings}: the run failed\n{result.stderr[-3000:]}")
    return int(found[1])


def fresh_database(args: argparse.Namespace, settings: str, folder: str) -> str:
    if not args.database_url:
        return f"sqlite:///{tempfile.mkstemp(suffix='.sqlite3', dir=folder)[1]}"
    import psycopg

    name = database_name(settings)
    with psycopg.connect(args.database_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{args.database_url.rsplit('/', 1)[0]}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server's URL (postgres://user@host:port/db): the databases are "
        "made beside it; SQLite files without it",
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--settings", nargs="*", default=[], help="more settings modules")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    folder = tempfile.mkdtemp(prefix="bench_instr_")
    try:
        per_request = {}
        for settings in [*PROJECTS, *args.settings]:
            base = counted(settings, 0, args, folder)
            total = counted(settings, args.requests, args, folder)
            per_request[settings] = (total - base) / args.requests
            print(f"{settings:40} {per_request[settings]:12,.0f} instructions per request")
        ours, theirs = (per_request[name] for name in PROJECTS)
        print(f"simplejwt / this app: {theirs / ours:.3f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        drop_databases(args, [*PROJECTS, *args.settings])


def drop_databases(args: argparse.Namespace, settings: list[str]) -> None:
    if not args.database_url:
        return
    import psycopg

    with psycopg.connect(args.database_url, autocommit=True) as connection:
        for name in settings:
            connection.execute(f'DROP DATABASE IF EXISTS "{database_name(name)}"')


def database_name(settings: str) -> str:
    return "bench_instr_" + re.sub(r"\W", "_", settings)[-40:]


if __name__ == "__main__":
    main()
