"""How soon a revocation reaches the other gunicorn workers: the time from a logout to
the first refused request on connections that land on other workers.

    .venv/bin/python benchmarks/revocation_propagation.py [--database postgresql|mariadb|sqlite]
        [--cache redis|file] [--redis-url URL] [--workers 4] [--rounds 20]
    .venv/bin/python benchmarks/revocation_propagation.py --redis all [--rounds 20]

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

``--redis SCENARIO…`` (``healthy``, ``paused``, ``killed``, ``restored``, ``none`` or
``all``) measures instead what a Redis fault does to a logout: a Redis server of the
benchmark's own (``tests/redis_servers.py``, a free loopback port; ``REDIS_URL`` points
the example project at it, with a ``--redis-socket-timeout`` of 1 s), gunicorn with 3
workers, ``--rounds`` rounds per scenario; each round logs in, warms every worker, and:

- healthy: logs out; every request sent after the answer must be refused;
- paused: ``CLIENT PAUSE <--pause-ms> WRITE`` just before the logout;
- killed: ``kill -9`` the Redis before the logout (started again, empty, after the round);
- restored: ``SAVE`` a snapshot, log out, ``kill -9`` the Redis and start it from the
  pre-logout snapshot: every read after that must be refused;
- none: no ``REDIS_URL`` (the example project's file cache).

``--probes`` clients read ``/api/me/`` with the family's access token from the logout's
answer for ``--window`` seconds. Per scenario it reports the logout's answers (an error
is one that is not 204), the requests accepted after the answer and the time from the
answer to the last one accepted on any worker (max and median over the rounds).

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
SCENARIOS = ("healthy", "paused", "killed", "restored", "none")


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
        return f"{args.pg}/{args.db_name}"
    if args.database == "mariadb":
        return f"{args.mysql}/{args.db_name}"
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
        CACHE_DIR=args.cache_dir,
        LOGIN_THROTTLE_RATE="",
        REFRESH_THROTTLE_RATE="",
    )
    if args.cache == "redis":
        env["REDIS_URL"] = args.redis_url
        # The example project's default, said here so that a changed default does not
        # change what the paused and killed scenarios measure.
        env["REDIS_SOCKET_TIMEOUT"] = str(args.redis_socket_timeout)
    return env


def create_database(args: argparse.Namespace) -> None:
    compare_simplejwt.create_database(args, args.db_name)


def drop_database(args: argparse.Namespace) -> None:
    if args.database == "postgresql":
        admin_sql(args, f"DROP DATABASE IF EXISTS {args.db_name} WITH (FORCE)")
    elif args.database == "mariadb":
        admin_sql(args, f"DROP DATABASE IF EXISTS {args.db_name}")


def start_server(
    args: argparse.Namespace, access_log: Path, stderr: Any = None
) -> subprocess.Popen[bytes]:
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
        stderr=stderr,
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

    try:  # the deny-list design: which push path is in use, and why
        from rotating_tokens import revocation

        push = str(revocation.status())
    except Exception as error:  # a version of the app without it, or a failing status
        push = f"(no revocation.status(): {type(error).__name__})"

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
                "poll_interval": setting("REVOCATION_POLL_INTERVAL"),
                "push": push,
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
    cache = info["cache"] + (f" ({args.redis_url})" if args.cache == "redis" else " (a new folder)")
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


# Scenarios: what Redis does around a logout ---------------------------------------------


@dataclass
class ScenarioRound:
    number: int
    logout_sent: float = 0.0
    logout_answered: float = 0.0
    logout_status: int = 0
    restored: float = 0.0  # restored: when the server answered again, from the snapshot
    warmed_workers: int = 0
    shots: list[Shot] = field(default_factory=list)


def scenario_round(
    args: argparse.Namespace,
    scenario: str,
    redis_server: Any,
    log: AccessLog,
    pids: set[int],
    number: int,
) -> ScenarioRound:
    """Log in, warm every worker, do the scenario's deed to Redis, log out, and probe
    with the family's access token for ``window`` seconds from the logout's answer."""
    result = ScenarioRound(number)
    status, pair = request(
        args.port,
        "POST",
        LOGIN,
        f"login-{scenario}-{number}",
        body={"username": USERNAME, "password": PASSWORD},
    )
    if status != 200:
        raise RuntimeError(f"login: {status} {pair}")
    access, refresh = pair["access"], pair["refresh"]
    _, result.warmed_workers = warm(args, log, pids, access, f"w-{scenario}-{number}")

    snapshot = None
    if scenario == "paused":
        redis_server.pause_writes(args.pause_ms)
    elif scenario == "killed":
        redis_server.kill()
    elif scenario == "restored":
        snapshot = redis_server.snapshot()

    go = threading.Event()
    lock = threading.Lock()
    window = args.window or (args.pause_ms / 1000 + 3 if scenario == "paused" else 3.0)

    def probe(index: int) -> None:
        go.wait()
        deadline = result.logout_answered + window
        fired = 0
        while time.perf_counter() < deadline:
            tag = f"p-{scenario}-{number}-{index}-{fired}"
            fired += 1
            sent = time.perf_counter()
            try:
                answer = request(args.port, "GET", ME, tag, access=access)[0]
            except OSError:
                answer = 0
            with lock:
                result.shots.append(Shot(tag, sent, time.perf_counter(), answer))
            time.sleep(args.probe_interval)

    threads = [threading.Thread(target=probe, args=(i,)) for i in range(args.probes)]
    for thread in threads:
        thread.start()
    result.logout_sent = time.perf_counter()
    try:
        result.logout_status, _ = request(
            args.port, "POST", LOGOUT, f"logout-{scenario}-{number}", body={"refresh": refresh}
        )
    except OSError:
        result.logout_status = 0
    result.logout_answered = time.perf_counter()
    go.set()
    if scenario == "restored":
        assert snapshot is not None
        redis_server.restart(snapshot)  # kill -9, then back from before the logout
        result.restored = time.perf_counter()
        snapshot.unlink()
    for thread in threads:
        thread.join()
    if scenario == "paused":
        redis_server.unpause()
    elif scenario == "killed":
        redis_server.restart(empty=True)
    return result


@dataclass
class ScenarioFigures:
    rounds: int
    logout_statuses: Counter[int]
    logout_seconds: list[float]
    accepted_after_answer: int
    rounds_with_accepted: int
    to_last_accepted: list[float]  # per round with any: answer to the last accepted one
    accepted_after_restore: int
    probe_statuses: Counter[int]
    workers_accepting: Counter[int]
    min_warmed: int


def scenario_figures(rounds: list[ScenarioRound], log: AccessLog) -> ScenarioFigures:
    figures = ScenarioFigures(len(rounds), Counter(), [], 0, 0, [], 0, Counter(), Counter(), 0)
    figures.min_warmed = min(r.warmed_workers for r in rounds)
    for r in rounds:
        figures.logout_statuses[r.logout_status] += 1
        figures.logout_seconds.append(r.logout_answered - r.logout_sent)
        accepted = [s for s in r.shots if s.status == 200 and s.sent >= r.logout_answered]
        for shot in r.shots:
            figures.probe_statuses[shot.status] += 1
        figures.accepted_after_answer += len(accepted)
        if accepted:
            figures.rounds_with_accepted += 1
            figures.to_last_accepted.append(max(s.answered for s in accepted) - r.logout_answered)
            for shot in accepted:
                figures.workers_accepting[log.answers.get(shot.tag, (0, 0))[0]] += 1
        if r.restored:
            figures.accepted_after_restore += sum(1 for s in accepted if s.sent >= r.restored)
    return figures


def print_scenario(scenario: str, figures: ScenarioFigures, window: float) -> None:
    errors = sum(n for status, n in figures.logout_statuses.items() if status != 204)
    probe_errors = sum(
        n for status, n in figures.probe_statuses.items() if status not in (200, 401)
    )
    last = figures.to_last_accepted
    print(f"\n--redis {scenario}: {figures.rounds} rounds, probing {window:g} s after each answer")
    print(f"  logout answers: {dict(sorted(figures.logout_statuses.items()))}, {errors} errors")
    print(f"  logout, send to answer: {spread(figures.logout_seconds)}")
    print(
        f"  requests accepted after the logout's answer: {figures.accepted_after_answer}, "
        f"in {figures.rounds_with_accepted} of {figures.rounds} rounds"
        + (f", by worker {dict(figures.workers_accepting)}" if last else "")
    )
    if last:
        print(
            f"  answer to the last accepted request: max {1000 * max(last):.0f} ms, "
            f"median {1000 * statistics.median(last):.0f} ms (over the rounds with any; "
            f"the window ends at {1000 * window:.0f} ms)"
        )
    else:
        print("  answer to the last accepted request: none accepted (0 ms)")
    if scenario == "restored":
        print(
            f"  accepted after Redis came back from the pre-logout snapshot: "
            f"{figures.accepted_after_restore} (must be 0)"
        )
    print(
        f"  probe statuses: {dict(sorted(figures.probe_statuses.items()))} "
        f"({probe_errors} neither 200 nor 401); workers warmed per round: min "
        f"{figures.min_warmed}"
    )


def run_scenarios(args: argparse.Namespace) -> int:
    """``--redis``: each scenario on a gunicorn of its own (a Redis of the benchmark's
    own, or none), ``--rounds`` rounds each. Returns the exit status: 1 if a request
    was accepted after the answer with Redis healthy or restored."""
    from tests import redis_servers

    scenarios = list(SCENARIOS) if "all" in args.redis else list(dict.fromkeys(args.redis))
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", args.port)) == 0:
            sys.exit(f"Port in use: {args.port}")
    args.workdir = tempfile.mkdtemp(prefix="bench_revocation_")
    create_database(args)
    failures = 0
    header_done = False
    try:
        with redis_servers.standalone() as own_redis:
            args.redis_url = own_redis.url(0)
            for scenario in scenarios:
                args.cache = "file" if scenario == "none" else "redis"
                # A fresh file-cache folder and access log per scenario.
                folder = Path(args.workdir) / scenario
                folder.mkdir()
                args.cache_dir = str(folder / "cache")
                if not header_done:
                    setup = subprocess.run(
                        [sys.executable, __file__, "--child", "setup"],
                        env=server_env(args),
                        cwd=ROOT,
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    info = json.loads(setup.stdout.strip().splitlines()[-1])
                    scenario_header(args, info, scenarios, own_redis)
                    header_done = True
                access_log = folder / "access.log"
                log = AccessLog(access_log)
                errors_file = folder / "server-stderr.txt"
                with errors_file.open("wb") as server_errors:
                    server = start_server(args, access_log, server_errors)
                rounds: list[ScenarioRound] = []
                try:
                    pids = worker_pids(server)
                    if scenario != "none":
                        print(f"  push path ({scenario}): {status_line(args)}", flush=True)
                    for number in range(1, args.rounds + 1):
                        rounds.append(scenario_round(args, scenario, own_redis, log, pids, number))
                finally:
                    stop_server(server)
                    if not own_redis.running:
                        own_redis.restart(empty=True)
                log.read()
                window = args.window or (args.pause_ms / 1000 + 3 if scenario == "paused" else 3.0)
                figures = scenario_figures(rounds, log)
                print_scenario(scenario, figures, window)
                logged = errors_file.read_text(errors="replace").splitlines()
                tracebacks = sum(1 for line in logged if line.startswith("Traceback"))
                last_error = next((line for line in reversed(logged) if "Error" in line), "")
                print(
                    f"  the servers' log: {len(logged)} lines, {tracebacks} tracebacks"
                    + (f" (last error: {last_error[:160]})" if last_error else "")
                )
                if scenario in ("healthy", "restored") and figures.accepted_after_answer:
                    failures += 1
    finally:
        drop_database(args)
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 1 if failures else 0


def status_line(args: argparse.Namespace) -> str:
    """What the app says of its push path, asked in a process with the servers'
    settings (the workers' own answer is not reachable from outside)."""
    script = (
        "import django; django.setup()\n"
        "try:\n"
        "    from rotating_tokens import revocation\n"
        "    print(revocation.status())\n"
        "except Exception as error:\n"
        "    print(f'no revocation.status() ({type(error).__name__})')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=server_env(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return (result.stdout.strip() or result.stderr.strip()[-300:]).replace("\n", " ")


def scenario_header(
    args: argparse.Namespace, info: dict[str, Any], scenarios: list[str], own_redis: Any
) -> None:
    import django

    commit, changed = code_version()
    print(compare_simplejwt.machine())
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, this app at "
        f"{commit}" + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")
    )
    version = own_redis.client().info("server")["redis_version"]
    print(
        f"{info['database']}; a Redis {version} of the benchmark's own on port "
        f"{own_redis.port} (socket timeout {args.redis_socket_timeout:g} s), or the file "
        f"cache for 'none'; gunicorn {args.workers} sync workers, DEBUG off, no throttling"
    )
    print(
        f"REVOCATION_POLL_INTERVAL {info['poll_interval']}; FAMILY_STATE_LOCAL_COPY "
        f"{info['local_copy']}, FAMILY_STATE_CACHE_TIMEOUT {info['state_timeout']}"
    )
    print(
        f"Scenarios {', '.join(scenarios)}: {args.rounds} rounds each, {args.probes} "
        f"probes from the logout's answer, each request on a new TCP connection",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--database", choices=["postgresql", "mariadb", "sqlite"], default="postgresql"
    )
    parser.add_argument(
        "--db-name", default=DATABASE, help="the database it creates and drops (or file)"
    )
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--mysql", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--cache", choices=["redis", "file"], default="redis")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/6",
        help="without --redis: the Redis the example project uses",
    )
    parser.add_argument(
        "--redis",
        nargs="+",
        choices=[*SCENARIOS, "all"],
        help="what happens to a Redis of the benchmark's own around each logout "
        "(scenarios: see the module's docstring); without it, the propagation rounds",
    )
    parser.add_argument(
        "--window",
        type=float,
        help="scenarios: seconds of probing after the logout's answer (default: "
        "the pause + 3 s for paused, 3 s for the others)",
    )
    parser.add_argument("--pause-ms", type=int, default=5000, help="the paused scenario's pause")
    parser.add_argument("--redis-socket-timeout", type=float, default=1.0)
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=0.01,
        help="scenarios: seconds each probe waits between requests",
    )
    parser.add_argument("--workers", type=int, help="gunicorn workers (default 4; scenarios: 3)")
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
    if args.workers is None:
        args.workers = 3 if args.redis else 4
    if args.child:
        child_setup()
        return
    if args.redis:
        sys.exit(run_scenarios(args))
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", args.port)) == 0:
            sys.exit(f"Port in use: {args.port}")

    args.workdir = tempfile.mkdtemp(prefix="bench_revocation_")
    args.cache_dir = str(Path(args.workdir) / "cache")
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
        before = redis_counters(args.redis_url) if args.cache == "redis" else {}
        rounds: list[Round] = []
        number = 0
        for _ in range(args.rounds):
            for start in args.start:
                number += 1
                result = run_round(args, log, pids, number, start)
                if result.logout_status != 204:
                    print(f"  round {number}: logout answered {result.logout_status}")
                rounds.append(result)
        after = redis_counters(args.redis_url) if args.cache == "redis" else {}
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
