"""What the revocation poll (rotating_tokens/revocation.py) costs the database, and what
the deny-list costs a process's memory.

    .venv/bin/python benchmarks/revocation_poll_cost.py [--processes 100] [--seconds 20]
        [--connections 50] [--revocations-per-second 10] [--backlog 100000]

On a fresh PostgreSQL database (created and dropped by the script) holding
``--backlog`` revocations within one access-token lifetime:

1. Memory: the deny-list of one process after ``--backlog`` revocations, measured with
   tracemalloc (what stays allocated): put on it directly (``deny``), and loaded by the
   start-up poll from the database (its peak too, and how long that poll took).
2. Load: ``--processes`` simulated processes, each with a deny-list of its own
   (``revocation._Known``) already started, each running the real poll
   (``_Known.poll``) once per second for ``--seconds`` seconds, staggered; meanwhile
   one writer logs ``--revocations-per-second`` revocations. Reported: polls (queries)
   per second, p50/p99/max poll latency, and the CPU time the database's backends
   spent on the polling connections (from /proc, when the server runs on this machine).

The processes share ``--connections`` database connections (one per thread, several
processes per thread): a process of its own per connection would need 100 of them,
which is PostgreSQL's default ``max_connections`` for the whole server. The database
sees the same query rate either way; only the number of idle connections differs.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import compare_simplejwt  # noqa: E402
from benchmarks.compare_simplejwt import admin_sql, percentile  # noqa: E402

SECRET_KEY = "benchmark-only-secret-key-not-for-production-0123456789"


def setup_django(args: argparse.Namespace) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DATABASE_URL=f"{args.pg}/{args.db_name}",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def fill_backlog(count: int) -> None:
    """``count`` revocations spread over the last access-token lifetime."""
    from django.utils import timezone

    from rotating_tokens.conf import app_settings
    from rotating_tokens.models import Revocation

    now = timezone.now()
    span = app_settings.ACCESS_TOKEN_LIFETIME.total_seconds() * 0.9
    rows = [
        Revocation(family_id=uuid.uuid4(), revoked_at=now - timedelta(seconds=span * i / count))
        for i in range(count)
    ]
    Revocation.objects.bulk_create(rows, batch_size=5000)


def retained(build: object) -> tuple[int, int]:
    """(bytes still allocated after ``build()``, peak bytes during it)."""
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    kept = build()  # type: ignore[operator]
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return after - before, peak - before


def memory(args: argparse.Namespace) -> None:
    from django.db import connection

    from rotating_tokens import revocation

    def direct() -> object:
        known = revocation._Known()
        known.deny([uuid.uuid4() for _ in range(args.backlog)])
        return known

    def loaded() -> object:
        known = revocation._Known()
        with known.lock:
            known.poll("default")
        return known

    size, peak = retained(direct)
    print(
        f"Deny-list of {args.backlog:,} families put on it (deny): {size / 2**20:.1f} MiB "
        f"({size / args.backlog:.0f} bytes per family), peak {peak / 2**20:.1f} MiB"
    )
    connection.ensure_connection()
    began = time.perf_counter()
    known = revocation._Known()
    with known.lock:
        known.poll("default")
    took = time.perf_counter() - began
    listed = sum(1 for entry in known.entries.values() if type(entry) is float)
    size, peak = retained(loaded)
    print(
        f"Deny-list loaded by the start-up poll ({listed:,} families from the database): "
        f"{size / 2**20:.1f} MiB kept, peak {peak / 2**20:.1f} MiB while loading, "
        f"the poll took {1000 * took:.0f} ms"
    )


def backend_cpu(pids: list[int]) -> float | None:
    """CPU seconds the database backends with these pids have used (None: not here)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def load(args: argparse.Namespace) -> None:
    from django.db import connection, connections
    from django.utils import timezone

    from rotating_tokens import revocation
    from rotating_tokens.models import Revocation

    newest = Revocation.objects.order_by("-id").values_list("id", flat=True).first() or 0
    per_thread = [list(range(i, args.processes, args.connections)) for i in range(args.connections)]
    latencies: list[list[float]] = [[] for _ in range(args.connections)]
    failures: list[BaseException] = []
    pids: list[int] = []
    pids_lock = threading.Lock()
    ready = threading.Barrier(args.connections + 2)
    stop = threading.Event()
    start_at = [0.0]

    def poller(index: int) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                with pids_lock:
                    pids.append(int(cursor.fetchone()[0]))
            states = []
            for process in per_thread[index]:
                known = revocation._Known()
                known.high = newest  # started: the steady state is what is measured
                # Staggered over the second, as independent processes are.
                states.append((process / args.processes, known))
            ready.wait()
            # Each process polls once a second, staggered over the second as
            # independent processes are; one that falls behind polls at once.
            due = [start_at[0] + offset for offset, _ in states]
            while not stop.is_set():
                slot = min(range(len(states)), key=due.__getitem__)
                delay = due[slot] - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if stop.is_set():
                    break
                known = states[slot][1]
                began = time.perf_counter()
                with known.lock:
                    known.poll("default")
                latencies[index].append(time.perf_counter() - began)
                due[slot] = max(due[slot] + 1.0, began)
        except BaseException as error:
            failures.append(error)
            stop.set()
            ready.abort()
        finally:
            connections.close_all()

    written = [0]

    def writer() -> None:
        try:
            ready.wait()
            interval = 1.0 / args.revocations_per_second if args.revocations_per_second else 0
            while not stop.is_set():
                if interval:
                    Revocation.objects.create(family_id=uuid.uuid4(), revoked_at=timezone.now())
                    written[0] += 1
                    time.sleep(interval)
                else:
                    time.sleep(0.1)
        except BaseException as error:
            failures.append(error)
            stop.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(args.connections)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    start_at[0] = time.perf_counter()
    ready.wait()
    cpu_before = backend_cpu(pids)
    began = time.perf_counter()
    time.sleep(args.seconds)
    cpu_after = backend_cpu(pids)
    stop.set()
    elapsed = time.perf_counter() - began
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    samples = [x * 1000 for per in latencies for x in per]
    print(
        f"\n{args.processes} processes polling once a second over {args.connections} "
        f"connections for {elapsed:.1f} s, {written[0]} revocations written meanwhile:"
    )
    print(f"  polls (queries): {len(samples)}, {len(samples) / elapsed:.1f} per second")
    print(
        f"  poll latency: p50 {statistics.median(samples):.2f} ms, "
        f"p99 {percentile(samples, 0.99):.2f} ms, max {max(samples):.2f} ms"
    )
    if cpu_before is not None and cpu_after is not None:
        used = cpu_after - cpu_before
        print(
            f"  database backends' CPU on these connections: {used:.2f} s in {elapsed:.1f} s "
            f"({100 * used / elapsed:.1f}% of one core)"
        )
    else:
        print("  database CPU: not measurable here (the server's processes are not visible)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="bench_poll_cost")
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--revocations-per-second", type=float, default=10)
    parser.add_argument("--backlog", type=int, default=100_000)
    args = parser.parse_args()
    args.database = "postgresql"
    args.connections = min(args.connections, args.processes)
    compare_simplejwt.create_database(args, args.db_name)
    try:
        setup_django(args)
        import django

        print(compare_simplejwt.machine())
        commit, changed = compare_simplejwt.code_version()
        print(
            f"Python {platform.python_version()}, Django {django.get_version()}, this app at "
            f"{commit}" + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")
        )
        print(f"{compare_simplejwt.database_version()}; {args.backlog:,} revocations logged")
        fill_backlog(args.backlog)
        memory(args)
        load(args)
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql(args, f"DROP DATABASE IF EXISTS {args.db_name} WITH (FORCE)")


if __name__ == "__main__":
    main()
