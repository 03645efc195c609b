"""Fill PostgreSQL with a large token table and time ``manage.py purge_expired_tokens``.

Not a test. It needs a PostgreSQL server, and it EMPTIES the token tables of the
database it is given (it creates that database if it does not exist)::

    .venv/bin/python benchmarks/purge_benchmark.py \\
        --database-url postgres://postgres@127.0.0.1:5432/purge_bench

The table is filled with ``INSERT … SELECT generate_series`` (a million rows in
seconds), ``--families`` families of 4 tokens each (a login and three refreshes),
in a mix that a real site has on purge day:

- 40 % live, refreshed every few days: their two oldest tokens are used and expired;
- 20 % absolutely expired a month ago;
- 20 % revoked (logout) three weeks ago;
- 10 % idle: every token expired two weeks ago;
- 10 % revoked two days ago (inside the 7-day retention: kept).

Then the purge runs as a subprocess (the way cron runs it), and the script reports its
wall time, the rows deleted and its peak memory (the child's ``ru_maxrss``), for the
dry run, the purge, and a second purge that finds nothing (the memory baseline).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENS_PER_FAMILY = 4

# Days relative to now, per kind of family: created, family expiry, revoked, and the
# issue times of its four tokens (each expires 14 days after issue, capped at the
# family's expiry; each but the last is used when the next is issued).
KINDS = {
    # g % 10 -> (created, expires, revoked, issued[0..3])
    "live": ((0, 1, 2, 3), -20, 10, None, (-20, -15, -10, -2)),
    "expired": ((4, 5), -60, -30, None, (-60, -55, -50, -45)),
    "revoked": ((6, 7), -40, -10, -21, (-40, -35, -30, -22)),
    "idle": ((8,), -30, 0, None, (-30, -29, -28, -27)),
    "recently revoked": ((9,), -5, 25, -2, (-5, -4, -3, -2)),
}


def case(column: int) -> str:
    """A SQL CASE over the family number ``g`` picking a value per kind."""
    whens = []
    for residues, *values in KINDS.values():
        value = values[column]
        sql = "NULL" if value is None else f"now() + interval '{value} days'"
        whens.append(f"WHEN mod(g, 10) IN ({', '.join(map(str, residues))}) THEN {sql}")
    return f"(CASE {' '.join(whens)} END)"


def issued_case() -> str:
    whens = []
    for residues, *_, issued in KINDS.values():
        days = f"(ARRAY[{', '.join(map(str, issued))}])[k + 1]"
        whens.append(
            f"WHEN mod(g, 10) IN ({', '.join(map(str, residues))}) "
            f"THEN now() + make_interval(days => {days})"
        )
    return f"(CASE {' '.join(whens)} END)"


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(database_url)
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{config["NAME"]}"')


def fill(families: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    users = max(1, families // 25)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE rotating_tokens_refreshtoken, rotating_tokens_tokenfamily CASCADE")
        cursor.execute("DELETE FROM auth_user WHERE username LIKE 'bench-%%'")
        cursor.execute(
            """
            INSERT INTO auth_user (password, is_superuser, username, first_name, last_name,
                                   email, is_staff, is_active, date_joined)
            SELECT '!', false, 'bench-' || u, '', '', '', false, true, now()
            FROM generate_series(1, %s) u
            """,
            [users],
        )
        cursor.execute("SELECT min(id) FROM auth_user WHERE username LIKE 'bench-%%'")
        first_user = cursor.fetchone()[0]
        cursor.execute(
            f"""
            INSERT INTO rotating_tokens_tokenfamily
                (id, user_id, created_at, expires_at, ip_address, user_agent,
                 revoked_at, revoke_reason)
            SELECT md5('family' || g)::uuid, %s + g %% %s, {case(0)}, {case(1)},
                   '10.0.0.1', 'bench/1.0', {case(2)},
                   CASE WHEN {case(2)} IS NULL THEN '' ELSE 'logout' END
            FROM generate_series(1, %s) g
            """,
            [first_user, users, families],
        )
        cursor.execute(
            f"""
            INSERT INTO rotating_tokens_refreshtoken
                (id, family_id, lookup_key, secret_hash, issued_at, expires_at, used_at,
                 rotated_from_id, ip_address, user_agent, sealed)
            SELECT t.id, md5('family' || t.g)::uuid, substr(md5('key' || t.id), 1, 16),
                   'hmac-sha256$' || md5('secret' || t.id), t.issued,
                   least(t.issued + interval '14 days', f.expires_at),
                   CASE WHEN t.k < 3 THEN t.issued + interval '1 hour' END,
                   CASE WHEN t.k > 0 THEN t.id - 1 END, '10.0.0.1', 'bench/1.0', NULL
            FROM (
                SELECT (g - 1) * 4 + k + 1 AS id, g, k, {issued_case()} AS issued
                FROM generate_series(1, %s) g, generate_series(0, 3) k
            ) t
            JOIN rotating_tokens_tokenfamily f ON f.id = md5('family' || t.g)::uuid
            """,
            [families],
        )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('rotating_tokens_refreshtoken', 'id'), "
            "(SELECT max(id) FROM rotating_tokens_refreshtoken))"
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rotating_tokens_tokenfamily")
        cursor.execute("ANALYZE rotating_tokens_refreshtoken")


def count_rows() -> tuple[int, int]:
    from rotating_tokens.models import RefreshToken, TokenFamily

    return TokenFamily.objects.count(), RefreshToken.objects.count()


def run_purge(database_url: str, *args: str) -> tuple[float, int, str]:
    """Run the command as cron would; returns wall seconds, peak RSS in MiB, output."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory
        "DJANGO_SECRET_KEY": "purge-benchmark",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "purge_expired_tokens", *args],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"purge_expired_tokens failed ({process.returncode})")
    return elapsed, usage.ru_maxrss // 1024, output.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "PURGE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/purge_bench"
        ),
    )
    parser.add_argument("--families", type=int, default=250_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    ensure_database(args.database_url)
    setup_django(args.database_url)
    started = time.perf_counter()
    fill(args.families)
    fill_seconds = time.perf_counter() - started
    families_before, tokens_before = count_rows()
    print(
        f"Filled {families_before:,} families and {tokens_before:,} tokens in {fill_seconds:.1f} s."
    )

    batch = ["--batch-size", str(args.batch_size)]
    dry_seconds, dry_rss, dry_output = run_purge(args.database_url, "--dry-run", *batch)
    print(f"Dry run: {dry_seconds:.1f} s, peak RSS {dry_rss} MiB. {dry_output}")
    seconds, rss, output = run_purge(args.database_url, *batch)
    families_after, tokens_after = count_rows()
    print(f"Purge: {seconds:.1f} s, peak RSS {rss} MiB. {output}")
    again_seconds, again_rss, _ = run_purge(args.database_url, *batch)
    print(f"Second purge (nothing to do): {again_seconds:.1f} s, peak RSS {again_rss} MiB.")

    deleted_families = families_before - families_after
    deleted_tokens = tokens_before - tokens_after
    print()
    print("| table before | deleted | purge wall time | rows/s | peak RSS (nothing to do) |")
    print("|---|---|---|---|---|")
    print(
        f"| {families_before:,} families, {tokens_before:,} tokens "
        f"| {deleted_families:,} families, {deleted_tokens:,} tokens "
        f"| {seconds:.1f} s (batches of {args.batch_size}) "
        f"| {(deleted_families + deleted_tokens) / seconds:,.0f} "
        f"| {rss} MiB ({again_rss} MiB) |"
    )


if __name__ == "__main__":
    main()
