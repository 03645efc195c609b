"""What binding a family to a DPoP key costs: a bound refresh next to an unbound one, and
a bound authenticated read (``GET /api/me/`` with ``Authorization: DPoP`` and a proof)
next to a bearer one.

    .venv/bin/python benchmarks/dpop_cost.py                   # SQLite, in-process and HTTP
    .venv/bin/python benchmarks/dpop_cost.py --database-url postgres://postgres@127.0.0.1:5432/dpop_bench

In-process: the example project through Django's test client; the server's CPU time per
request (``time.process_time`` around the request only: the client signs its proof
before the clock starts). Over HTTP: the example project under gunicorn (one sync
worker), one client, the median latency of each kind, the kinds alternating. The proofs
are ES256 (EC P-256), signed with PyJWT as a mobile app would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERNAME, PASSWORD = "bench", "bench-password-1234"
BASE = "http://testserver"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument(
        "--redis",
        default=None,
        help="a Redis URL for the shared cache (family state, used proofs); default: the "
        "example project's file cache, with used proofs in the database",
    )
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--port", type=int, default=8311)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dpop-bench-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key-not-for-production-0123456789",
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'db.sqlite3'}",
        "CACHE_DIR": str(workdir / "cache"),
        "LOGIN_THROTTLE_RATE": "",
        "REFRESH_THROTTLE_RATE": "",
    }
    if args.redis:
        env["REDIS_URL"] = args.redis
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user_model.objects.filter(username=USERNAME).delete()
    user_model.objects.create_user(USERNAME, password=PASSWORD)

    print(
        f"Python {sys.version.split()[0]}, Django {django.get_version()}, "
        f"database {env['DATABASE_URL'].split(':')[0]}, {args.rounds} rounds each"
    )
    in_process(args.rounds)
    over_http(args.rounds, args.port, env)


def in_process(rounds: int) -> None:
    from django.test import Client

    from tests.dpop_client import DPoPKey

    client = Client(HTTP_USER_AGENT="bench/1.0")
    key = DPoPKey()
    cpu: dict[str, list[float]] = {
        k: [] for k in ("refresh", "refresh bound", "read", "read bound")
    }
    plain = _login(client)
    bound = _login(client, key)
    for _ in range(rounds):
        for kind, session in (("refresh", plain), ("refresh bound", bound)):
            extra = (
                {"HTTP_DPOP": key.proof("POST", BASE + "/api/auth/token/refresh/")}
                if session is bound
                else {}
            )
            started = time.process_time()
            response = client.post(
                "/api/auth/token/refresh/",
                {"refresh": session["refresh"]},
                content_type="application/json",
                **extra,
            )
            cpu[kind].append(time.process_time() - started)
            assert response.status_code == 200, response.content
            session.update(response.json())
        for kind, session in (("read", plain), ("read bound", bound)):
            scheme = "DPoP" if session is bound else "Bearer"
            extra = (
                {"HTTP_DPOP": key.proof("GET", BASE + "/api/me/", access=session["access"])}
                if session is bound
                else {}
            )
            started = time.process_time()
            response = client.get(
                "/api/me/", HTTP_AUTHORIZATION=f"{scheme} {session['access']}", **extra
            )
            cpu[kind].append(time.process_time() - started)
            assert response.status_code == 200, response.content
    print("\nIn-process, server CPU per request (median):")
    for base in ("refresh", "read"):
        a, b = statistics.median(cpu[base]) * 1e6, statistics.median(cpu[f"{base} bound"]) * 1e6
        print(f"  {base:8} bearer {a:8.0f} us   bound {b:8.0f} us   difference {b - a:+7.0f} us")


def _login(client, key=None) -> dict:
    extra = {"HTTP_DPOP": key.proof("POST", BASE + "/api/auth/token/")} if key else {}
    response = client.post(
        "/api/auth/token/",
        {"username": USERNAME, "password": PASSWORD},
        content_type="application/json",
        **extra,
    )
    assert response.status_code == 200, response.content
    return response.json()


def over_http(rounds: int, port: int, env: dict[str, str]) -> None:
    from tests.dpop_client import DPoPKey

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "example_project.wsgi",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        _wait_for(port)
        key = DPoPKey()
        base = f"http://127.0.0.1:{port}"
        plain, bound = _http_login(port), _http_login(port, key, base)
        latency: dict[str, list[float]] = {"refresh": [], "refresh bound": []}
        for _ in range(rounds):
            for kind, session in (("refresh", plain), ("refresh bound", bound)):
                headers = {"Content-Type": "application/json", "User-Agent": "bench/1.0"}
                if session is bound:
                    headers["DPoP"] = key.proof("POST", base + "/api/auth/token/refresh/")
                started = time.perf_counter()
                status, body = _request(
                    port,
                    "POST",
                    "/api/auth/token/refresh/",
                    {"refresh": session["refresh"]},
                    headers,
                )
                latency[kind].append(time.perf_counter() - started)
                assert status == 200, body
                session.update(body)
        a, b = (statistics.median(latency[k]) * 1e3 for k in ("refresh", "refresh bound"))
        print(
            f"\nOver HTTP (gunicorn, 1 worker), refresh latency (median): bearer {a:.2f} ms, "
            f"bound {b:.2f} ms, difference {b - a:+.2f} ms"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


def _http_login(port, key=None, base="") -> dict:
    headers = {"Content-Type": "application/json", "User-Agent": "bench/1.0"}
    if key:
        headers["DPoP"] = key.proof("POST", base + "/api/auth/token/")
    status, body = _request(
        port, "POST", "/api/auth/token/", {"username": USERNAME, "password": PASSWORD}, headers
    )
    assert status == 200, body
    return body


def _request(port, method, path, body, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


if __name__ == "__main__":
    main()
