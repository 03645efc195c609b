"""Refresh-token rotation, logins and authenticated reads: this app against
djangorestframework-simplejwt, in one run.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python benchmarks/compare_simplejwt.py [--database postgresql|mariadb|sqlite]

Starts both projects under gunicorn (same worker count and settings, DEBUG off), each
on a fresh database of its own (PostgreSQL or MariaDB: created and dropped by the
script; SQLite: a new file per peer in a temporary folder, WAL, ``BEGIN IMMEDIATE``,
configured alike on both sides), and drives them with the same HTTP client,
alternating, at several concurrencies, four kinds of request:

- refresh: every client follows one chain, each refresh sending the token the previous
  one returned (this app: rotation with families; simplejwt: rotation with its
  blacklist);
- read: ``GET /api/me/`` with a valid access token (this app: AccessTokenAuthentication,
  which checks the family's state in the shared cache; simplejwt: its stateless
  JWTAuthentication), one user query in both;
- floor: ``GET`` on the refresh URL, a 405 that reaches the view and does nothing: what
  the stack (gunicorn, middleware, DRF) costs before any work;
- login: ``POST`` of username and password (this app: a new family and its first
  token; simplejwt: a pair, its refresh token recorded as outstanding), the password
  check aside: both servers are given the same fast hasher (``DJANGO_PASSWORD_HASHERS``,
  MD5 unless ``--password-hasher`` says otherwise) and the user is created with it. The
  hasher each server really uses is printed; if they differ, the login ratio is not
  comparable and is not printed.

No throttling on either side: simplejwt's views have none. Then it counts SQL statements
per login and refresh in-process, times the two hashers and the secret comparison, and
fires 50 concurrent refreshes of one token at each server.

Needs the database server (``--pg``, default postgres://postgres@127.0.0.1:5432;
``--mysql``, default mysql://root@127.0.0.1:3306) and Redis for the example project's
shared cache (``--redis``), or ``--cache file`` for its file cache (no Redis at all).
``--port-base`` and ``--db-suffix`` let several runs share a machine and a database
server. The authenticated read alone, the way the revocation figures are reported:

    .venv/bin/python benchmarks/compare_simplejwt.py --kinds read --concurrency 1 4 16 \
        --database postgresql --cache file
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
USERNAME = "bench"
PASSWORD = "bench-password-1234"
SECRET_KEY = "benchmark-only-secret-key-not-for-production-0123456789"
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
KINDS = ("refresh", "read", "floor", "login")
EXPECTED_STATUS = {"refresh": 200, "read": 200, "floor": 405, "login": 200}


@dataclass(frozen=True)
class Peer:
    name: str
    settings: str
    wsgi: str
    database: str
    port: int
    login_path: str
    refresh_path: str
    read_path: str = "/api/me/"


OURS = Peer(
    "rotating_tokens",
    "example_project.settings",
    "example_project.wsgi:application",
    "bench_ours",
    8301,
    "/api/auth/token/",
    "/api/auth/token/refresh/",
)
THEIRS = Peer(
    "simplejwt",
    "benchmarks.simplejwt_peer.settings",
    "benchmarks.simplejwt_peer.wsgi:application",
    "bench_peer",
    8302,
    "/api/token/",
    "/api/token/refresh/",
)
PEERS = (OURS, THEIRS)


# HTTP ----------------------------------------------------------------------------------


def post(port: int, path: str, body: dict[str, Any], timeout: float = 30) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body)
        conn.request(
            "POST",
            path,
            payload,
            {"Content-Type": "application/json", "User-Agent": "bench-client/1.0"},
        )
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def get(port: int, path: str, access: str | None = None, timeout: float = 30) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"User-Agent": "bench-client/1.0"}
    if access:
        headers["Authorization"] = f"Bearer {access}"
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def login_pair(peer: Peer) -> dict[str, Any]:
    status, data = post(peer.port, peer.login_path, {"username": USERNAME, "password": PASSWORD})
    if status != 200:
        raise RuntimeError(f"{peer.name}: login failed with {status}: {data}")
    return data


def login(peer: Peer) -> str:
    return login_pair(peer)["refresh"]


# Servers and databases -----------------------------------------------------------------


def database_url(peer: Peer, args: argparse.Namespace) -> str:
    if args.database == "postgresql":
        return f"{args.pg}/{peer.database}"
    if args.database == "mariadb":
        return f"{args.mysql}/{peer.database}"
    return f"sqlite:///{Path(args.sqlite_dir) / peer.database}.sqlite3"


def peer_env(peer: Peer, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DJANGO_PASSWORD_HASHERS", "REDIS_URL", "CACHE_DIR"):
        env.pop(name, None)
    if args.cache == "redis":
        env["REDIS_URL"] = args.redis
    else:  # the example project's file cache, in a folder of this run's own
        env["CACHE_DIR"] = args.cache_dir
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE=peer.settings,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DATABASE_URL=database_url(peer, args),
        # Throttling is off for the benchmark: one address sends thousands of refreshes,
        # and the peer has none.
        LOGIN_THROTTLE_RATE="",
        REFRESH_THROTTLE_RATE="",
    )
    if args.password_hasher:
        # Read by both settings modules: the login kind leaves the password check aside.
        env["DJANGO_PASSWORD_HASHERS"] = args.password_hasher
    return env


def admin_sql(args: argparse.Namespace, *statements: str) -> None:
    """Run statements on the server, outside the peers' databases."""
    if args.database == "postgresql":
        import psycopg

        with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
    elif args.database == "mariadb":
        # mysqlclient ships no type stubs; a module object keeps mypy strict without them.
        mysqldb = importlib.import_module("MySQLdb")
        url = urlsplit(args.mysql)
        connection = mysqldb.connect(
            host=url.hostname or "127.0.0.1",
            port=url.port or 3306,
            user=unquote(url.username or "root"),
            passwd=unquote(url.password or ""),
        )
        try:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
        finally:
            connection.close()


def create_database(args: argparse.Namespace, name: str) -> None:
    """A new, empty database ``name`` on the server (PostgreSQL or MariaDB)."""
    if args.database == "postgresql":
        admin_sql(
            args,
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
            f"CREATE DATABASE {name}",
        )
    elif args.database == "mariadb":
        admin_sql(
            args,
            f"DROP DATABASE IF EXISTS {name}",
            f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )


def recreate_databases(args: argparse.Namespace) -> None:
    for peer in PEERS:
        create_database(args, peer.database)
    # SQLite: the files are made by migrate, in a folder of this run's own.


def drop_databases(args: argparse.Namespace) -> None:
    if args.database == "sqlite":
        shutil.rmtree(args.sqlite_dir, ignore_errors=True)
        return
    force = " WITH (FORCE)" if args.database == "postgresql" else ""
    for peer in PEERS:
        admin_sql(args, f"DROP DATABASE IF EXISTS {peer.database}{force}")


def run_child(peer: Peer, args: argparse.Namespace, task: str) -> Any:
    result = subprocess.run(
        [sys.executable, __file__, "--child", task],
        env=peer_env(peer, args),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_server(peer: Peer, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            peer.wsgi,
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{peer.port}",
            "--backlog",
            "256",
            "--log-level",
            "warning",
        ],
        env=peer_env(peer, args),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{peer.name}: gunicorn exited with {process.returncode}")
        try:
            status, _ = post(peer.port, peer.refresh_path, {"refresh": "x"}, timeout=5)
            if status in (400, 401):
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{peer.name}: gunicorn did not answer in 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Load ----------------------------------------------------------------------------------


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    refreshes: int = 0
    errors: int = 0
    seconds: float = 0.0
    #: CPU seconds the server (gunicorn's master and workers) used during the phase.
    server_cpu: float = math.nan


def server_cpu(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user and system) a gunicorn master and its workers have used so far,
    from Linux's /proc; NaN elsewhere. Unlike requests per second, it does not move
    when another tenant of a shared machine takes the CPU away for a while."""
    try:
        with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
            pids = [process.pid, *(int(pid) for pid in children.read().split())]
    except OSError:
        return math.nan
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that ended
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_phase(
    peer: Peer, tokens: list[str], duration: float, kind: str = "refresh", access: str = ""
) -> Phase:
    """``len(tokens)`` clients send requests of ``kind`` for ``duration`` seconds: each
    refreshes its own chain, reads ``/api/me/`` with ``access``, hits the floor, or
    logs in."""
    phase = Phase()
    lock = threading.Lock()
    start = threading.Barrier(len(tokens) + 1)
    deadline = 0.0

    def client(index: int) -> None:
        latencies: list[float] = []
        errors = 0
        start.wait()
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            data: Any = None
            try:
                if kind == "refresh":
                    status, data = post(peer.port, peer.refresh_path, {"refresh": tokens[index]})
                elif kind == "read":
                    status = get(peer.port, peer.read_path, access)
                elif kind == "login":
                    status, data = post(
                        peer.port, peer.login_path, {"username": USERNAME, "password": PASSWORD}
                    )
                else:
                    status = get(peer.port, peer.refresh_path)
            except OSError:
                status = 0
            elapsed = time.perf_counter() - began
            if status == EXPECTED_STATUS[kind]:
                latencies.append(elapsed)
                if kind == "refresh":
                    tokens[index] = data["refresh"]
            else:
                errors += 1
                if kind == "refresh":
                    tokens[index] = login(peer)  # the chain is broken: start a new one
        with lock:
            phase.latencies.extend(latencies)
            phase.refreshes += len(latencies)
            phase.errors += errors

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + duration
    start.wait()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - began
    return phase


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def concurrent_refreshes_of_one_token(peer: Peer, count: int = 50) -> dict[str, Any]:
    """``count`` clients (same user agent and address) send the same token at once."""
    token = login(peer)
    barrier = threading.Barrier(count)
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def fire() -> None:
        barrier.wait()
        result = post(peer.port, peer.refresh_path, {"refresh": token})
        with lock:
            results.append(result)

    threads = [threading.Thread(target=fire) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    distinct = {data["refresh"] for status, data in results if status == 200}
    return {"statuses": statuses, "distinct_refresh_tokens": len(distinct)}


# In-process measurements (run in a child process per peer) -----------------------------


def child_setup() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    return {"ok": True}


def database_version() -> str:
    """The database server this process talks to, e.g. "PostgreSQL 15.20"."""
    from django.db import connection

    queries = {
        "postgresql": "SHOW server_version",
        "mysql": "SELECT VERSION()",
        "sqlite": "SELECT sqlite_version()",
    }
    with connection.cursor() as cursor:
        cursor.execute(queries[connection.vendor])
        version = str(cursor.fetchone()[0]).split(" (")[0]
    return f"{connection.display_name} {version}"


def server_info() -> dict[str, Any]:
    """What this peer's settings really give: the database server, the hasher a
    password is checked with, the cache (read in-process, from the settings module
    gunicorn loads)."""
    from django.conf import settings
    from django.db import connection

    database = database_version()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA journal_mode")
            options = connection.settings_dict.get("OPTIONS", {})
            database += (
                f", journal_mode={cursor.fetchone()[0]}, "
                f"transaction_mode={options.get('transaction_mode', 'DEFERRED')}, "
                f"timeout={options.get('timeout', 5)} s"
            )
    return {
        "database": database,
        "hasher": settings.PASSWORD_HASHERS[0],
        "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
    }


def count_statements(login_path: str, refresh_path: str) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_USER_AGENT="bench-client/1.0")
    with CaptureQueriesContext(connection) as login_queries:
        response = client.post(
            login_path, {"username": USERNAME, "password": PASSWORD}, "application/json"
        )
    assert response.status_code == 200, response.content
    refresh = response.json()["refresh"]
    with CaptureQueriesContext(connection) as refresh_queries:
        response = client.post(refresh_path, {"refresh": refresh}, "application/json")
    assert response.status_code == 200, response.content
    return {
        "login": len(login_queries),
        "refresh": len(refresh_queries),
        "login_sql": [q["sql"][:90] for q in login_queries.captured_queries],
        "refresh_sql": [q["sql"][:90] for q in refresh_queries.captured_queries],
    }


def median_seconds(call: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def hasher_costs() -> dict[str, Any]:
    """In-process cost of one refresh (services.rotate) under each hasher."""
    from django.contrib.auth import get_user_model
    from django.test.utils import override_settings

    from rotating_tokens import crypto, services

    user = get_user_model().objects.get(username=USERNAME)
    client = services.Client("127.0.0.1", "bench-client/1.0")
    out: dict[str, Any] = {}
    for hasher, repeat in ((crypto.HMAC_SHA256, 300), (crypto.ARGON2, 15)):
        with override_settings(ROTATING_TOKENS={"TOKEN_HASHER": hasher}):
            raw = services.start_family(user, client).refresh

            def refresh() -> None:
                nonlocal raw
                raw = services.rotate(raw, client).refresh

            refresh()  # warm up
            out[hasher] = {
                "refresh_ms": 1000 * median_seconds(refresh, repeat),
                "hash_ms": 1000
                * median_seconds(partial(crypto.hash_secret, "s" * 43, hasher), repeat),
            }
            stored = crypto.hash_secret("s" * 43, hasher)
            out[hasher]["verify_ms"] = 1000 * median_seconds(
                partial(crypto.verify_secret, "s" * 43, stored), repeat
            )
    return out


def verification_timing() -> dict[str, Any]:
    """Right lookup key: the right secret against wrong ones, interleaved so drift in
    machine load hits all of them alike. Medians and means in microseconds."""
    from django.contrib.auth import get_user_model
    from django.db import router

    from rotating_tokens import crypto, services
    from rotating_tokens.models import RefreshToken

    user = get_user_model().objects.get(username=USERNAME)
    raw = services.start_family(user, services.Client("127.0.0.1", "bench")).refresh
    parsed = crypto.parse_token(raw)
    stored = RefreshToken.objects.get(lookup_key=parsed.lookup_key).secret_hash
    flip = {"A": "B", "B": "A"}
    first = flip.get(parsed.secret[0], "A") + parsed.secret[1:]
    last = parsed.secret[:-1] + flip.get(parsed.secret[-1], "A")
    candidates = {"right secret": parsed.secret, "wrong first char": first, "wrong last char": last}
    db = router.db_for_write(RefreshToken)

    def measure(call: Callable[[str], Any], rounds: int) -> dict[str, Any]:
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(rounds):
            for name, secret in candidates.items():
                began = time.perf_counter_ns()
                call(secret)
                samples[name].append((time.perf_counter_ns() - began) / 1000)
        return {
            name: {"median_us": statistics.median(s), "mean_us": statistics.fmean(s)}
            for name, s in samples.items()
        }

    return {
        "verify_secret": measure(lambda secret: crypto.verify_secret(secret, stored), 20000),
        "find_token (SELECT + verify)": measure(
            lambda secret: services._find_token(crypto.ParsedToken(parsed.lookup_key, secret), db),
            300,
        ),
    }


def child(task: str) -> None:
    import django

    django.setup()
    settings_module = os.environ["DJANGO_SETTINGS_MODULE"]
    peer = next(p for p in PEERS if p.settings == settings_module)
    if task == "setup":
        result = child_setup()
    else:
        result = {
            "server": server_info(),
            "sql": count_statements(peer.login_path, peer.refresh_path),
        }
        if peer is OURS:
            result["hashers"] = hasher_costs()
            result["timing"] = verification_timing()
    print(json.dumps(result))


# Report --------------------------------------------------------------------------------


def code_version() -> tuple[str, list[str]]:
    """This checkout's commit, and the files of the app or the example project that
    differ from it (so a figure says what code it measured)."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--short", "--", "rotating_tokens", "example_project"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "?", []
    return commit, [line[3:] for line in status if line.strip()]


def machine() -> str:
    """The CPUs, the system and its load, for the header of a run."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"load average {load}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import django

    found = []
    for name in ("djangorestframework", "djangorestframework-simplejwt", "PyJWT", "gunicorn"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} ?")
    commit, changed = code_version()
    return (
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        + ", ".join(found)
        + f", this app at {commit}"
        + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")
    )


def redis_version(url: str) -> str:
    try:
        import redis

        info = redis.Redis.from_url(url, socket_timeout=5).info("server")
        return f"Redis {info['redis_version']}"
    except Exception as error:  # the header only: the servers will say if Redis is down
        return f"Redis ? ({type(error).__name__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--database", choices=["postgresql", "mariadb", "sqlite"], default="postgresql"
    )
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--mysql", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    parser.add_argument(
        "--cache",
        choices=["redis", "file"],
        default="redis",
        help="this app's shared cache: Redis (--redis) or the example project's file "
        "cache (no REDIS_URL, a new folder)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=OURS.port,
        help="this app's port; simplejwt's is the next one",
    )
    parser.add_argument(
        "--db-suffix",
        default="",
        help="appended to the databases' names (bench_ours, bench_peer), so that runs "
        "on one server do not share them",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--duration", type=float, default=3, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=6, help="alternations per concurrency")
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=KINDS,
        help="what to measure (default: all four)",
    )
    parser.add_argument(
        "--password-hasher",
        default=FAST_HASHER,
        help="DJANGO_PASSWORD_HASHERS for both servers (comma-separated hasher paths); "
        "an empty string leaves Django's default, the password check included",
    )
    args = parser.parse_args()
    configure_peers(args)
    if args.child:
        child(args.child)
        return
    busy = [p.port for p in PEERS if not _free(p.port)]
    if busy:
        sys.exit(f"Ports in use: {busy}")

    args.cache_dir = tempfile.mkdtemp(prefix="bench_cache_")
    args.sqlite_dir = tempfile.mkdtemp(prefix="bench_sqlite_") if args.database == "sqlite" else ""
    print(machine())
    print(versions(), flush=True)
    recreate_databases(args)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        measured = {}
        for peer in PEERS:
            run_child(peer, args, "setup")
            measured[peer.name] = run_child(peer, args, "measure")
        info = {peer.name: measured[peer.name]["server"] for peer in PEERS}
        for peer in PEERS:
            print(
                f"{peer.name:16} {info[peer.name]['database']}; password hasher "
                f"{info[peer.name]['hasher'].rsplit('.', 1)[-1]}; cache "
                f"{info[peer.name]['cache']}"
            )
        hashers_match = len({info[peer.name]["hasher"] for peer in PEERS}) == 1
        cache = (
            f"{redis_version(args.redis)} ({args.redis})"
            if args.cache == "redis"
            else "the file cache (no Redis)"
        )
        print(
            f"Cache: {cache} for this app's family state; "
            "simplejwt's stateless access tokens use none."
        )
        print(
            f"gunicorn {args.workers} sync workers per server, DEBUG off, "
            "no throttles: simplejwt's views have none.",
            flush=True,
        )
        if "login" in args.kinds and not hashers_match:
            print(
                "WARNING: the servers check passwords with different hashers; the login "
                "figures include that difference and their ratio is not printed.",
                flush=True,
            )
        servers = [start_server(peer, args) for peer in PEERS]
        server_of = {peer.name: server for peer, server in zip(PEERS, servers, strict=True)}
        races = {peer.name: concurrent_refreshes_of_one_token(peer) for peer in PEERS}

        chains = {peer.name: [login(peer) for _ in range(max(args.concurrency))] for peer in PEERS}
        # Warm both servers up with every kind, so that each worker has run each path once
        # (the first authenticated read of a worker imports and builds what a refresh
        # does not need: tens of milliseconds that would land in the first phase's p99).
        for peer in PEERS:
            access = login_pair(peer)["access"]
            for kind in ("refresh", *(k for k in args.kinds if k != "refresh")):
                run_phase(peer, chains[peer.name], 1 if kind == "refresh" else 0.3, kind, access)
        results: dict[tuple[str, str, int], list[Phase]] = {}
        for kind in args.kinds:
            for concurrency in args.concurrency:
                # A fresh access token per kind and concurrency: a phase is far shorter
                # than its five minutes.
                access = {peer.name: login_pair(peer)["access"] for peer in PEERS}
                for round_ in range(args.rounds):
                    order = PEERS if round_ % 2 == 0 else PEERS[::-1]
                    for peer in order:
                        tokens = chains[peer.name][:concurrency]
                        cpu_before = server_cpu(server_of[peer.name])
                        phase = run_phase(peer, tokens, args.duration, kind, access[peer.name])
                        phase.server_cpu = server_cpu(server_of[peer.name]) - cpu_before
                        chains[peer.name][:concurrency] = tokens
                        results.setdefault((kind, peer.name, concurrency), []).append(phase)
                        print(
                            f"  {kind:8} {peer.name:16} c={concurrency:<3} round {round_ + 1}: "
                            f"{phase.refreshes / phase.seconds:7.1f}/s",
                            flush=True,
                        )
    finally:
        for server in servers:
            stop_server(server)
        drop_databases(args)
        shutil.rmtree(args.cache_dir, ignore_errors=True)

    rates: dict[tuple[str, str, int], float] = {}
    for kind in args.kinds:
        print()
        title = "Login (password check aside)" if kind == "login" else kind.capitalize()
        print(
            f"{title} throughput on {args.database}, gunicorn {args.workers} sync workers "
            f"each, no throttling, {args.rounds} x {args.duration:g} s per peer and "
            "concurrency, alternating:"
        )
        header = f"{'peer':16} {'clients':>7} {'requests/s':>11} {'p50 ms':>8} {'p95 ms':>8} "
        print(header + f"{'p99 ms':>8} {'errors':>7} {'ours/theirs':>12}")
        for concurrency in args.concurrency:
            for peer in PEERS:
                phases = results[(kind, peer.name, concurrency)]
                latencies = [x for p in phases for x in p.latencies]
                rate = sum(p.refreshes for p in phases) / sum(p.seconds for p in phases)
                rates[(kind, peer.name, concurrency)] = rate
                ratio = ""
                if peer is THEIRS:
                    if kind == "login" and not hashers_match:
                        ratio = "n/a"
                    elif rate:
                        ratio = f"{rates[(kind, OURS.name, concurrency)] / rate:.2f}x"
                print(
                    f"{peer.name:16} {concurrency:>7} {rate:>11.1f} "
                    f"{1000 * percentile(latencies, 0.50):>8.1f} "
                    f"{1000 * percentile(latencies, 0.95):>8.1f} "
                    f"{1000 * percentile(latencies, 0.99):>8.1f} "
                    f"{sum(p.errors for p in phases):>7} {ratio:>12}"
                )
    print(
        "\nServer CPU per request (gunicorn's master and workers, user and system, from "
        "/proc), and the rounds paired (each of ours with the simplejwt round beside it):"
    )
    print(
        f"{'kind':8} {'clients':>7} {'ours µs':>9} {'theirs µs':>10} {'theirs/ours':>12} "
        f"{'paired rate ratio, median (range)':>36}"
    )
    for kind in args.kinds:
        for concurrency in args.concurrency:
            ours_phases = results[(kind, OURS.name, concurrency)]
            theirs_phases = results[(kind, THEIRS.name, concurrency)]
            cpu = [
                1e6 * sum(p.server_cpu for p in phases) / max(1, sum(p.refreshes for p in phases))
                for phases in (ours_phases, theirs_phases)
            ]
            paired = [
                (a.refreshes / a.seconds) / (b.refreshes / b.seconds)
                for a, b in zip(ours_phases, theirs_phases, strict=True)
                if b.refreshes
            ]
            spread = (
                f"{statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})"
                if paired
                else "n/a"
            )
            print(
                f"{kind:8} {concurrency:>7} {cpu[0]:>9.0f} {cpu[1]:>10.0f} "
                f"{cpu[1] / cpu[0] if cpu[0] else math.nan:>11.2f}x {spread:>36}"
            )

    if {"refresh", "read"} <= set(args.kinds):
        print("\nHow close a refresh is to the limit (this app, same run):")
        for concurrency in args.concurrency:
            refresh = rates[("refresh", OURS.name, concurrency)]
            read = rates[("read", OURS.name, concurrency)]
            floor = rates.get(("floor", OURS.name, concurrency))
            line = f"  {concurrency:>3} clients: refresh/read {refresh / read:.2f}"
            if floor:
                line += f", read/floor {read / floor:.2f}, refresh/floor {refresh / floor:.2f}"
            print(line)

    print("\nSQL statements (CaptureQueriesContext, transaction control included):")
    for peer in PEERS:
        sql = measured[peer.name]["sql"]
        print(f"  {peer.name:16} login {sql['login']:>2}   refresh {sql['refresh']:>2}")
        for what in ("login", "refresh"):
            print(f"    {what}:")
            for statement in sql[f"{what}_sql"]:
                print(f"      {statement}")

    print("\nHasher cost (in-process, median):")
    for hasher, cost in measured[OURS.name]["hashers"].items():
        print(
            f"  {hasher:12} refresh {cost['refresh_ms']:7.2f} ms   hash {cost['hash_ms']:7.3f} ms"
            f"   verify {cost['verify_ms']:7.3f} ms"
        )

    print("\nRight lookup key, right vs wrong secret (hmac-sha256):")
    for what, figures in measured[OURS.name]["timing"].items():
        print(f"  {what}")
        for name, figure in figures.items():
            print(
                f"    {name:18} median {figure['median_us']:8.2f} us   "
                f"mean {figure['mean_us']:8.2f} us"
            )

    print("\n50 concurrent refreshes of one token (same client):")
    for peer in PEERS:
        race = races[peer.name]
        print(
            f"  {peer.name:16} statuses {race['statuses']}, "
            f"distinct refresh tokens returned: {race['distinct_refresh_tokens']}"
        )


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def configure_peers(args: argparse.Namespace) -> None:
    """Ports and database names from the options (several runs can share a machine)."""
    global OURS, THEIRS, PEERS
    OURS = replace(OURS, port=args.port_base, database=f"bench_ours{args.db_suffix}")
    THEIRS = replace(THEIRS, port=args.port_base + 1, database=f"bench_peer{args.db_suffix}")
    PEERS = (OURS, THEIRS)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
