"""What recording a used DPoP proof costs per request, in each store it can go to
(``services.proof_is_new``): the UsedDPoPProof table, outside a transaction (the app's
own views) and inside one (``ATOMIC_REQUESTS``: a connection of its own per proof, except
on SQLite), and a Redis that does not evict.

    .venv/bin/python benchmarks/dpop_replay_store.py                  # SQLite (a file)
    .venv/bin/python benchmarks/dpop_replay_store.py \\
        --database-url postgres://postgres@127.0.0.1:5432/dpop_replay \\
        --redis redis://127.0.0.1:6379/4

Each figure is the wall-clock time of one ``proof_is_new`` call for a new proof (the
proofs are verified beforehand: signature checks are not counted), median and 95th
percentile over ``--rounds`` calls, after a warm-up (which also asks Redis, once,
whether it evicts). The database is a test database created for the run and dropped
after it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(database_url: str | None, redis_url: str | None, workdir: Path) -> None:
    import dj_database_url
    from django.conf import settings

    database = dj_database_url.parse(database_url or f"sqlite:///{workdir / 'replay.sqlite3'}")
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # As the example project runs it: WAL, no fsync per commit.
        database["TEST"] = {"NAME": str(workdir / "test-replay.sqlite3")}
        database["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        }
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if redis_url:
        caches["redis"] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"replay-bench-{uuid.uuid4()}",
        }
    settings.configure(
        SECRET_KEY="benchmark-only-secret-key-not-for-production-0123456789",
        USE_TZ=True,
        DATABASES={"default": database},
        CACHES=caches,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_framework",
            "rotating_tokens",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ROTATING_TOKENS={"DPOP_REPLAY_CACHE": "default"},
    )
    import django

    django.setup()


def proofs(count: int) -> list:
    from cryptography.hazmat.primitives.asymmetric import ec

    from rotating_tokens.dpop import Proof, jwk_thumbprint

    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(key.x.to_bytes(32, "big")),
        "y": _b64(key.y.to_bytes(32, "big")),
    }
    jkt, now = jwk_thumbprint(jwk), time.time()
    return [
        Proof(jkt=jkt, jti=str(uuid.uuid4()), iat=now, htm="GET", htu="", alg="ES256",
              accepted_until=now + 65)
        for _ in range(count)
    ]  # fmt: skip


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def measure(rounds: int, record: Callable[[object], bool]) -> tuple[float, float]:
    for proof in proofs(20):  # warm-up: connections, the eviction question
        assert record(proof)
    timings = []
    for proof in proofs(rounds):
        start = time.perf_counter()
        new = record(proof)
        timings.append(time.perf_counter() - start)
        assert new
    timings.sort()
    return statistics.median(timings) * 1e6, timings[int(len(timings) * 0.95)] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--redis", default=None, help="a Redis URL (maxmemory-policy noeviction)")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    configure(args.database_url, args.redis, workdir)
    import django
    from django.db import connection, transaction
    from django.test.utils import override_settings

    from rotating_tokens import services

    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(
            f"Python {sys.version.split()[0]}, Django {django.get_version()}, "
            f"{connection.vendor}, {args.rounds} proofs each, {os.cpu_count()} CPUs; "
            "microseconds per proof_is_new"
        )

        def in_atomic(proof: object) -> bool:
            with transaction.atomic():
                return services.proof_is_new(proof)  # type: ignore[arg-type]

        rows = [
            ("table, autocommit", services.proof_is_new),
            ("table, inside a transaction", in_atomic),
        ]
        for label, record in rows:
            median, p95 = measure(args.rounds, record)
            print(f"  {label:<36} median {median:8.0f}   p95 {p95:8.0f}")
        if args.redis:
            with override_settings(ROTATING_TOKENS={"DPOP_REPLAY_CACHE": "redis"}):
                assert services.replay_cache() is not None, "this Redis may evict"
                median, p95 = measure(args.rounds, services.proof_is_new)
                print(f"  {'Redis (noeviction)':<36} median {median:8.0f}   p95 {p95:8.0f}")
                from django.core.cache import caches

                caches["redis"].clear()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
