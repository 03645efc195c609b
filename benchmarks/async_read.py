"""The authenticated async read under uvicorn, this app against simplejwt, and 1,000
WebSockets closed by a revocation.

    .venv/bin/pip install -e ".[bench,test]"
    .venv/bin/python benchmarks/async_read.py [--workers 2] [--duration 5]

HTTP: the example project under ``uvicorn --workers N`` (DEBUG off, PostgreSQL, Redis
as the shared cache), with two async views on the same server: ``/api/async/me/``
(``@access_token_required``: ``access.aauthenticate_request``, family, owner and DPoP
binding checked) and ``/bench/simplejwt/me/`` (simplejwt's ``JWTAuthentication`` in a
``sync_to_async`` hop: signature and user only). The same access token, the same
client (httpx, HTTP/1.1 keep-alive), at 1, 4 and 16 concurrent clients, the two views
alternating in rounds so that drift on a shared machine hits both alike.

WebSocket: ``uvicorn --workers 1``, 1,000 sockets open on ``/ws/me/``, 10 per family
(100 logins). Ten of those families are logged out over HTTP, through another server
process, one after another, each at a random point of the poll interval; for
each, the time from the logout's answer to each of its sockets' close (4401) is taken,
and after all of them the other 900 sockets must still answer a ping.

The database is created for the run and dropped after it (``--pg``, default
postgres://postgres@127.0.0.1:5432), or ``--database-url`` names one to use as it is;
Redis is ``--redis`` (its database 7 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.compare_simplejwt import (  # noqa: E402  # its database helpers
    FAST_HASHER,
    PASSWORD,
    SECRET_KEY,
    USERNAME,
    admin_sql,
    create_database,
)

DATABASE = "bench_async"
OURS, THEIRS = "/api/async/me/", "/bench/simplejwt/me/"


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="benchmarks.async_peer.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DATABASE_URL=args.database_url or f"{args.pg}/{DATABASE}",
        **({"REDIS_URL": args.redis} if args.redis else {}),
        LOGIN_THROTTLE_RATE="",
        REFRESH_THROTTLE_RATE="",
        DJANGO_PASSWORD_HASHERS=FAST_HASHER,
    )
    return env


def prepare(args: argparse.Namespace) -> None:
    if not args.database_url:
        create_database(args, DATABASE)
    env = server_env(args)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    code = (
        "import django; django.setup();"
        "from django.contrib.auth import get_user_model;"
        f"users = get_user_model().objects; users.filter(username={USERNAME!r}).delete();"
        f"users.create_user({USERNAME!r}, password={PASSWORD!r})"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)


def start(args: argparse.Namespace, workers: int, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "example_project.asgi:application",
            "--workers",
            str(workers),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=server_env(args),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{OURS}", timeout=2).status_code == 401:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("uvicorn did not answer in 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def login(base: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/api/auth/token/", json={"username": USERNAME, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return response.json()


# HTTP ----------------------------------------------------------------------------------


async def load(base: str, path: str, access: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    refused: list[str] = []
    headers = {"Authorization": f"Bearer {access}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        end = time.monotonic() + seconds

        async def one() -> None:
            nonlocal errors
            while time.monotonic() < end:
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                    refused.append(f"{response.status_code} {response.text[:200]}")

        await asyncio.gather(*(one() for _ in range(clients)))
    if errors:
        raise RuntimeError(f"{path}: {errors} answers were not 200: {sorted(set(refused))}")
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000,
    }


def http_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    port = args.port
    base = f"http://127.0.0.1:{port}"
    server = start(args, args.workers, port)
    try:
        access = login(base)["access"]
        for path in (OURS, THEIRS):  # warm both (imports, connections, the state cache)
            asyncio.run(load(base, path, access, 4, 1.0))
        rows = []
        for clients in (1, 4, 16):
            runs: dict[str, list[dict[str, float]]] = {OURS: [], THEIRS: []}
            for _ in range(args.rounds):
                for path in (OURS, THEIRS):
                    runs[path].append(
                        asyncio.run(load(base, path, access, clients, args.duration / args.rounds))
                    )
            ours = statistics.median(r["rps"] for r in runs[OURS])
            theirs = statistics.median(r["rps"] for r in runs[THEIRS])
            rows.append(
                {
                    "clients": clients,
                    "ours_rps": round(ours),
                    "simplejwt_rps": round(theirs),
                    "ratio": round(ours / theirs, 3),
                    "ours_p50_ms": round(statistics.median(r["p50_ms"] for r in runs[OURS]), 2),
                    "simplejwt_p50_ms": round(
                        statistics.median(r["p50_ms"] for r in runs[THEIRS]), 2
                    ),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        stop(server)


# WebSockets ----------------------------------------------------------------------------


async def websocket_benchmark(
    base: str, other: str, families: int, per_family: int, revoked: int
) -> dict[str, Any]:
    """The sockets on ``base``; the logins and logouts on ``other``, another server
    process, so that the sockets' process hears of each revocation as it hears of any
    other process's (a push through Redis, else its poll)."""
    ws_url = base.replace("http://", "ws://") + "/ws/me/"
    async with httpx.AsyncClient(base_url=other, timeout=60) as client:

        async def one_login() -> dict[str, Any]:
            response = await client.post(
                "/api/auth/token/", json={"username": USERNAME, "password": PASSWORD}
            )
            response.raise_for_status()
            return response.json()

        logins = []
        for start_at in range(0, families, 20):
            batch = [one_login() for _ in range(min(20, families - start_at))]
            logins += await asyncio.gather(*batch)
        sockets: list[list[Any]] = []

        async def open_one(access: str) -> Any:
            socket = await websockets.connect(ws_url, open_timeout=60, ping_interval=None)
            await socket.send(json.dumps({"type": "authenticate", "access": access}))
            answer = json.loads(await asyncio.wait_for(socket.recv(), 60))
            assert answer["type"] == "authenticated", answer
            return socket

        opened_at = time.monotonic()
        for tokens in logins:
            sockets.append(
                list(await asyncio.gather(*(open_one(tokens["access"]) for _ in range(per_family))))
            )
        open_seconds = time.monotonic() - opened_at
        delays: list[float] = []
        for index in range(revoked):
            group = sockets[index]
            # At a random point of the poll interval: one logout right after the poll
            # that closed the previous family's sockets would always wait a whole one.
            await asyncio.sleep(random.uniform(0, 1.0))
            response = await client.post(
                "/api/auth/logout/", json={"refresh": logins[index]["refresh"]}
            )
            assert response.status_code == 204, response.text
            answered = time.monotonic()

            async def closed(socket: Any, answered: float = answered) -> float:
                try:
                    await asyncio.wait_for(socket.recv(), 10)
                except websockets.ConnectionClosed as close:
                    assert close.rcvd is not None and close.rcvd.code == 4401, close
                    return time.monotonic() - answered
                raise AssertionError("a message instead of the close")

            delays += await asyncio.gather(*(closed(s) for s in group))
        # Every other socket is still open and authenticated.
        survivors = [s for group in sockets[revoked:] for s in group]

        async def pong(socket: Any) -> bool:
            await socket.send(json.dumps({"type": "ping"}))
            return json.loads(await asyncio.wait_for(socket.recv(), 30))["type"] == "pong"

        alive = sum(await asyncio.gather(*(pong(s) for s in survivors)))
        for socket in survivors:
            await socket.close()
    return {
        "sockets": families * per_family,
        "families": families,
        "revoked_families": revoked,
        "closed": len(delays),
        "others_still_open": f"{alive}/{len(survivors)}",
        "open_seconds": round(open_seconds, 1),
        "close_after_logout_median_ms": round(statistics.median(delays) * 1000),
        "close_after_logout_worst_ms": round(max(delays) * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/7", help='"" : no Redis (the poll alone)'
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (HTTP part)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per view and level")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--database-url", help="an existing database to use as it is (not created or dropped)"
    )
    args = parser.parse_args()
    args.database = "postgresql"  # compare_simplejwt's helpers read it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    prepare(args)
    try:
        results: dict[str, Any] = {}
        if not args.skip_http:
            results["http"] = http_benchmark(args)
        server = start(args, 1, args.port + 1)
        logouts = start(args, 1, args.port + 2)
        try:
            results["websocket"] = asyncio.run(
                websocket_benchmark(
                    f"http://127.0.0.1:{args.port + 1}",
                    f"http://127.0.0.1:{args.port + 2}",
                    args.sockets // 10,
                    10,
                    10,
                )
            )
            results["websocket"]["revocation_push"] = "redis" if args.redis else "none (poll)"
            print(json.dumps(results["websocket"]), flush=True)
        finally:
            stop(logouts)
            stop(server)
        print(json.dumps(results, indent=2))
    finally:
        if not args.database_url:
            admin_sql(args, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
