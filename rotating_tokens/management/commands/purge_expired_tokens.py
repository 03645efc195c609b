"""``manage.py purge_expired_tokens``: for a cron job. The rules are in ``services.purge``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rotating_tokens import services
from rotating_tokens.conf import app_settings

MAX_DAYS = 36_500  # a century: further back than any date the database holds


class Command(BaseCommand):
    help = (
        "Delete token families that have been over (expired, idle or revoked) for longer "
        "than the retention period, with their tokens, and the used, expired tokens of "
        "active families. Works in short batches; safe to run while the site is up, and "
        "twice at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="DAYS",
            help="Keep families that have been over for at most this many days "
            "(default: the PURGE_RETENTION setting). 0 deletes all that are over.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Rows deleted per transaction (default 1000).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than_days = options["older_than"]
        batch_size = options["batch_size"]
        if older_than_days is not None and not 0 <= older_than_days <= MAX_DAYS:  # and NaN
            raise CommandError(f"--older-than must be a number of days from 0 to {MAX_DAYS}.")
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more.")
        older_than = None if older_than_days is None else timedelta(days=older_than_days)
        retention = app_settings.PURGE_RETENTION if older_than is None else older_than
        verbosity = options["verbosity"]

        def progress(result: services.PurgeResult) -> None:
            if verbosity >= 2:
                self.stdout.write(
                    f"  … {result.families} families, {result.tokens} tokens deleted so far"
                )

        result = services.purge(
            older_than=older_than,
            batch_size=batch_size,
            dry_run=options["dry_run"],
            progress=progress,
        )
        if verbosity >= 1:
            verb = "Would delete" if options["dry_run"] else "Deleted"
            self.stdout.write(
                f"{verb} {result.families} token families over for more than "
                f"{retention.total_seconds() / 86400:g} days "
                f"(with {result.family_tokens} tokens) and {result.used_tokens} used, "
                "expired tokens of active families."
            )
            if result.simplejwt_records:
                self.stdout.write(
                    f"{verb} {result.simplejwt_records} records of the simplejwt "
                    "transition (spent tokens since expired, or the transition is over)."
                )
            if result.revocations:
                self.stdout.write(
                    f"{verb} {result.revocations} rows of the revocation log no process "
                    "reads any more."
                )
