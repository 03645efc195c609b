"""How soon a revocation reaches the other gunicorn workers: the time from a logout to
the first refused request on connections that land on other workers.

    .venv/bin/python benchmarks/revocation_propagation.py [--database postgresql|mariadb|sqlite]
        [--cache redis|file] [--workers 4] [--rounds 20]

Starts the example project under gunicorn (``--workers`` sync workers, DEBUG off, no
throttling) on a fresh database (PostgreSQL or MariaDB: created and dropped by the
script; SQLite: a new file in a temporary folder), with its family-state cache in Redis
(``REDIS_URL``) or in the file cache (``--cache file``, a new folder). Then, each round:

1. logs in (a new family);
2. warms every worker: ``GET /api/me/`` with the access token, each on a new TCP
   connection, until every worker has answered at least ``--warm-per-worker`` of them
   (so each has read the family's state, and kept it if it keeps a copy);
3. ``POST /api/auth/logout/`` with the refresh token; ``--probes`` other clients fire
   ``GET /api/me/`` with the same access token, each request on a new TCP connection
   (so the workers share them), ``--shots`` requests each, as fast as they can. They
   start when the logout's 204 arrives ("after the 204") or when the logout is sent
   ("during the logout"); ``--start`` chooses, both by default, a new family for each.

It records, per probe, the time from the 204 and from the logout's send to its first
401, and counts every 200: a 200 to a request sent after the 204 arrived is a
revocation that had not reached that worker (there should be none); a 200 to a request
sent before the 204 but answered after it is a request that overtook the revocation
(possible during the logout, not after it).

Which worker answered each request is read from gunicorn's access log (its pid, and a
header the client sets on each request), not from the project, which is not changed.
Loopback only; bounded by ``--rounds``, ``--shots`` and ``--round-timeout``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/revocation_propagation.py
    sys.path.insert(0, str(ROOT))

from benchmarks import compare_simplejwt  # noqa: E402
from benchmarks.compare_simplejwt import (  # noqa: E402
    admin_sql,
    code_version,
    percentile,
    stop_server,
)

USERNAME = "bench"
PASSWORD = "bench-password-1234"
SECRET_KEY = "benchmark-only-secret-key-not-for-production-0123456789"
DATABASE = "bench_revocation"
TAG_HEADER = "X-Bench-Tag"
LOGIN, LOGOUT, ME = "/api/auth/token/", "/api/auth/logout/", "/api/me/"
# gunicorn's access log: the worker's pid ("<1234>"), our tag, the status.
ACCESS_LOG_FORMAT = "%(p)s %({x-bench-tag}i)s %(s)s"


# HTTP: every request on a new connection ------------------------------------------------


def request(
    port: int, method: str, path: str, tag: str, *, body: Any = None, access: str = ""
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"User-Agent": "bench-client/1.0", TAG_HEADER: tag}
    if access:
        headers["Authorization"] = f"Bearer {access}"
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, None
    finally:
        conn.close()


# Server and database --------------------------------------------------------------------


def database_url(args: argparse.Namespace) -> str:
    if args.database == "postgresql":
        return f"{args.pg}/{DATABASE}"
    if args.database == "mariadb":
        return f"{args.mysql}/{DATABASE}"
    return f"sqlite:///{Path(args.workdir) / DATABASE}.sqlite3"


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "CACHE_DIR", "DJANGO_PASSWORD_HASHERS")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DATABASE_URL=database_url(args),
        CACHE_DIR=str(Path(args.workdir) / "cache"),
        LOGIN_THROTTLE_RATE="",
        REFRESH_THROTTLE_RATE="",
    )
    if args.cache == "redis":
        env["REDIS_URL"] = args.redis
    return env


def create_database(args: argparse.Namespace) -> None:
    compare_simplejwt.create_database(args, DATABASE)


def drop_database(args: argparse.Namespace) -> None:
    if args.database == "postgresql":
        admin_sql(args, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    elif args.database == "mariadb":
        admin_sql(args, f"DROP DATABASE IF EXISTS {DATABASE}")


def start_server(args: argparse.Namespace, access_log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "example_project.wsgi:application",
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{args.port}",
            "--backlog",
            "256",
            "--log-level",
            "warning",
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            ACCESS_LOG_FORMAT,
        ],
        env=server_env(args),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            status, _ = request(args.port, "GET", ME, "ready")
            if status == 401 and len(worker_pids(process)) == args.workers:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not answer in 60 s")


def worker_pids(process: subprocess.Popen[bytes]) -> set[int]:
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    except OSError:
        return set()
    return {int(pid) for pid in children.split()}


class AccessLog:
    """gunicorn's access log, read as it grows: which worker answered which tag."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.answers: dict[str, tuple[int, int]] = {}  # tag: (pid, status)

    def read(self) -> None:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line being written waits for the next read
        self.offset += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith("<"):
                self.answers[parts[1]] = (int(parts[0].strip("<>")), int(parts[2]))

    def workers(self, tags: list[str], wait: float = 1.0) -> dict[str, int]:
        """The pid that answered each of ``tags``, waiting up to ``wait`` seconds for
        the lines (a worker logs a request after sending its response)."""
        deadline = time.monotonic() + wait
        while True:
            self.read()
            missing = [tag for tag in tags if tag not in self.answers]
            if not missing or time.monotonic() > deadline:
                return {tag: self.answers[tag][0] for tag in tags if tag in self.answers}
            time.sleep(0.02)


# One round ------------------------------------------------------------------------------


@dataclass
class Shot:
    tag: str
    sent: float
    answered: float
    status: int


@dataclass
class Round:
    number: int
    start: str  # "204" or "send"
    logout_sent: float = 0.0
    logout_answered: float = 0.0
    logout_status: int = 0
    warm_requests: int = 0
    warmed_workers: int = 0
    shots: list[list[Shot]] = field(default_factory=list)  # per probe


def warm(
    args: argparse.Namespace, log: AccessLog, pids: set[int], access: str, prefix: str
) -> tuple[int, int]:
    """GETs on new connections until every worker answered ``--warm-per-worker`` of
    them, or ``--warm-max`` were sent. Returns (requests sent, workers warmed)."""
    sent = 0
    per_worker: Counter[int] = Counter()
    batch = 2 * args.workers
    while sent < args.warm_max:
        tags = [f"{prefix}-{sent + i}" for i in range(batch)]
        statuses: list[int] = []

        def get(tag: str, statuses: list[int]) -> None:
            statuses.append(request(args.port, "GET", ME, tag, access=access)[0])

        threads = [threading.Thread(target=get, args=(tag, statuses)) for tag in tags]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent += batch
        if any(status != 200 for status in statuses):
            raise RuntimeError(f"warm-up: statuses {Counter(statuses)}")
        per_worker.update(log.workers(tags).values())
        if all(per_worker[pid] >= args.warm_per_worker for pid in pids):
            break
    return sent, sum(1 for pid in pids if per_worker[pid] >= args.warm_per_worker)


def run_round(
    args: argparse.Namespace, log: AccessLog, pids: set[int], number: int, start: str
) -> Round:
    result = Round(number, start)
    status, pair = request(
        args.port,
        "POST",
        LOGIN,
        f"login-{number}",
        body={"username": USERNAME, "password": PASSWORD},
    )
    if status != 200:
        raise RuntimeError(f"login: {status} {pair}")
    access, refresh = pair["access"], pair["refresh"]
    result.warm_requests, result.warmed_workers = warm(args, log, pids, access, f"w{number}")

    go = threading.Event()
    answered_204 = threading.Event()
    result.shots = [[] for _ in range(args.probes)]

    def probe(index: int) -> None:
        go.wait()
        deadline = time.perf_counter() + args.round_timeout
        shots = result.shots[index]
        fired = 0
        while fired < args.shots and time.perf_counter() < deadline:
            tag = f"p{number}-{index}-{fired}"
            sent = time.perf_counter()
            try:
                status = request(args.port, "GET", ME, tag, access=access)[0]
            except OSError:
                status = 0
            shots.append(Shot(tag, sent, time.perf_counter(), status))
            # During the logout, only the shots after the 204 count towards --shots.
            if answered_204.is_set() and sent >= result.logout_answered:
                fired += 1

    threads = [threading.Thread(target=probe, args=(i,)) for i in range(args.probes)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # the probes are waiting on the event
    if start == "send":
        go.set()
    result.logout_sent = time.perf_counter()
    result.logout_status, _ = request(
        args.port, "POST", LOGOUT, f"logout-{number}", body={"refresh": refresh}
    )
    result.logout_answered = time.perf_counter()
    answered_204.set()
    go.set()
    for thread in threads:
        thread.join()
    return result


# The child: migrate, create the user, say what the settings give -------------------------


def child_setup() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from rotating_tokens.conf import app_settings

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    database = compare_simplejwt.database_version()

    try:
        from django.core.cache import caches

        from rotating_tokens import local_state

        alias = app_settings.FAMILY_STATE_CACHE
        pushes = alias is not None and local_state.pushes(caches[alias])
        copy_in_effect = "yes" if app_settings.FAMILY_STATE_LOCAL_COPY and pushes else "no"
    except (ImportError, AttributeError):  # a version of the app without local copies
        copy_in_effect = "no"

    def setting(name: str) -> str:
        try:
            return str(getattr(app_settings, name))
        except AttributeError:  # a setting this version of the app does not have
            return "(no such setting)"

    print(
        json.dumps(
            {
                "database": database,
                "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
                "check_family_on_access": setting("CHECK_FAMILY_ON_ACCESS"),
                "local_copy": setting("FAMILY_STATE_LOCAL_COPY"),
                "local_copy_in_effect": copy_in_effect,
                "local_timeout": setting("FAMILY_STATE_LOCAL_TIMEOUT"),
                "state_timeout": setting("FAMILY_STATE_CACHE_TIMEOUT"),
            }
        )
    )


# Report ---------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    if not values:
        return "no samples"
    ms = [1000 * v for v in values]
    return (
        f"min {min(ms):7.2f}  median {statistics.median(ms):7.2f}  "
        f"p99 {percentile(ms, 0.99):7.2f}  max {max(ms):7.2f} ms  (n={len(ms)})"
    )


def report(rounds: list[Round], log: AccessLog, pids: set[int], args: argparse.Namespace) -> int:
    """Print the figures per start mode; return how many 200s were answered to requests
    sent after a 204 (the failures)."""
    late_total = 0
    for start in args.start:
        chosen = [r for r in rounds if r.start == start]
        if not chosen:
            continue
        title = {"204": "after the 204", "send": "during the logout"}[start]
        from_204: list[float] = []
        from_send: list[float] = []
        logout: list[float] = []
        latency: list[float] = []
        latency_before: list[float] = []
        statuses: Counter[int] = Counter()
        late_200 = overtaking_200 = no_401 = 0
        workers_refusing: list[int] = []
        refusals_by_worker: Counter[int] = Counter()
        first_401_by_worker: Counter[int] = Counter()
        late_by_worker: Counter[int] = Counter()
        logout_workers: Counter[int] = Counter()
        for r in chosen:
            logout.append(r.logout_answered - r.logout_sent)
            logout_pid = log.answers.get(f"logout-{r.number}", (0, 0))[0]
            logout_workers[logout_pid] += 1
            refusing: set[int] = set()
            for shots in r.shots:
                first = next((s for s in shots if s.status == 401), None)
                if first is None:
                    no_401 += 1
                else:
                    from_204.append(first.answered - r.logout_answered)
                    from_send.append(first.answered - r.logout_sent)
                    first_401_by_worker[log.answers.get(first.tag, (0, 0))[0]] += 1
                for shot in shots:
                    statuses[shot.status] += 1
                    pid = log.answers.get(shot.tag, (0, 0))[0]
                    if shot.status == 200 and shot.sent >= r.logout_answered:
                        late_200 += 1
                        late_by_worker[pid] += 1
                    elif shot.status == 200 and shot.answered > r.logout_answered:
                        overtaking_200 += 1
                    if shot.sent < r.logout_answered:
                        latency_before.append(shot.answered - shot.sent)
                    if shot.status == 401 and shot.sent >= r.logout_answered:
                        refusing.add(pid)
                        refusals_by_worker[pid] += 1
                        latency.append(shot.answered - shot.sent)
            workers_refusing.append(len(refusing & pids))
        late_total += late_200
        warmed = [r.warmed_workers for r in chosen]
        print(f"\nProbes starting {title} ({len(chosen)} rounds x {args.probes} probes):")
        print(f"  logout, send to 204:        {spread(logout)}")
        print(f"  204 to each probe's 1st 401: {spread(from_204)}")
        print(f"  send to each probe's 1st 401: {spread(from_send)}")
        print(f"  for scale, any 401 after the 204, sent to answered: {spread(latency)}")
        if latency_before:
            print(f"  requests sent before the 204, sent to answered: {spread(latency_before)}")
        print(f"  statuses of all probe requests: {dict(sorted(statuses.items()))}")
        print(
            f"  200s to requests sent after the 204: {late_200} (should be 0)"
            + (f", by worker {dict(late_by_worker)}" if late_200 else "")
        )
        print(f"  200s sent before the 204 and answered after it: {overtaking_200}")
        if no_401:
            print(f"  probes that never got a 401: {no_401}")
        print(
            f"  workers warmed per round: min {min(warmed)} of {len(pids)} "
            f"(warm-up requests per round: median "
            f"{statistics.median([r.warm_requests for r in chosen]):g})"
        )
        print(
            f"  workers refusing after the 204, per round: min {min(workers_refusing)}, "
            f"median {statistics.median(workers_refusing):g} of {len(pids)}"
        )
        print(f"  401s after the 204 by worker pid: {dict(sorted(refusals_by_worker.items()))}")
        print(f"  probes' first 401 by worker pid: {dict(sorted(first_401_by_worker.items()))}")
        print(f"  logouts by worker pid: {dict(sorted(logout_workers.items()))}")
    return late_total


def redis_counters(url: str) -> dict[str, int]:
    """Server-wide command counts (other users of the same Redis count too)."""
    try:
        import redis

        stats = redis.Redis.from_url(url, socket_timeout=5).info("commandstats")
    except Exception:  # the figures are a side note
        return {}
    return {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("mget", "get", "set", "publish")
    }


def header(args: argparse.Namespace, info: dict[str, Any]) -> None:
    import django

    commit, changed = code_version()
    print(compare_simplejwt.machine())
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, this app at "
        f"{commit}" + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")
    )
    cache = info["cache"] + (f" ({args.redis})" if args.cache == "redis" else " (a new folder)")
    print(
        f"{info['database']}; cache {cache}; gunicorn {args.workers} sync workers, DEBUG "
        "off, no throttling"
    )
    print(
        f"CHECK_FAMILY_ON_ACCESS {info['check_family_on_access']}, FAMILY_STATE_LOCAL_COPY "
        f"{info['local_copy']} (a copy per worker in effect: {info['local_copy_in_effect']}), "
        f"FAMILY_STATE_LOCAL_TIMEOUT {info['local_timeout']}, "
        f"FAMILY_STATE_CACHE_TIMEOUT {info['state_timeout']}"
    )
    print(
        f"{args.rounds} rounds per start mode, {args.probes} probes x {args.shots} requests "
        "after the 204, each request on a new TCP connection",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--database", choices=["postgresql", "mariadb", "sqlite"], default="postgresql"
    )
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--mysql", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--cache", choices=["redis", "file"], default="redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=8303)
    parser.add_argument("--rounds", type=int, default=20, help="rounds per start mode")
    parser.add_argument("--probes", type=int, default=8, help="clients probing after the logout")
    parser.add_argument(
        "--shots", type=int, default=10, help="requests per probe sent after the 204"
    )
    parser.add_argument("--warm-per-worker", type=int, default=3)
    parser.add_argument("--warm-max", type=int, default=400, help="warm-up requests per round")
    parser.add_argument("--round-timeout", type=float, default=10.0, help="seconds per probe")
    parser.add_argument(
        "--start",
        nargs="+",
        choices=["204", "send"],
        default=["204", "send"],
        help="when the probes start: when the 204 arrives, or when the logout is sent",
    )
    args = parser.parse_args()
    if args.child:
        child_setup()
        return
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", args.port)) == 0:
            sys.exit(f"Port in use: {args.port}")

    args.workdir = tempfile.mkdtemp(prefix="bench_revocation_")
    access_log = Path(args.workdir) / "access.log"
    server: subprocess.Popen[bytes] | None = None
    log = AccessLog(access_log)
    create_database(args)
    try:
        setup = subprocess.run(
            [sys.executable, __file__, "--child", "setup"],
            env=server_env(args),
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(setup.stdout.strip().splitlines()[-1])
        header(args, info)
        server = start_server(args, access_log)
        pids = worker_pids(server)
        before = redis_counters(args.redis) if args.cache == "redis" else {}
        rounds: list[Round] = []
        number = 0
        for _ in range(args.rounds):
            for start in args.start:
                number += 1
                result = run_round(args, log, pids, number, start)
                if result.logout_status != 204:
                    print(f"  round {number}: logout answered {result.logout_status}")
                rounds.append(result)
        after = redis_counters(args.redis) if args.cache == "redis" else {}
        now_pids = worker_pids(server)
        if now_pids != pids:
            print(f"Workers changed during the run: {sorted(pids)} -> {sorted(now_pids)}")
    finally:
        if server is not None:
            stop_server(server)  # the workers have written their last access-log lines
        log.read()
        drop_database(args)
        shutil.rmtree(args.workdir, ignore_errors=True)
    late = report(rounds, log, pids, args)
    if before and after:
        delta = {name: after[name] - before.get(name, 0) for name in after}
        requests = len(log.answers)
        print(
            f"\nRedis commands during the rounds (server-wide, other users included): "
            f"{delta}, for {requests} logged requests"
        )
    if late:
        sys.exit(f"{late} requests sent after a 204 were answered 200")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
