"""Check a built site: every setting, system check id, error code and signal of the code
is defined on its reference page (scripts/docs.sh runs this after the build)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).parent)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docs_settings")

import django  # noqa: E402

django.setup()

import rt_reference  # noqa: E402


def main(site: Path) -> int:
    pages = {
        "setting": (site / "reference/settings.html").read_text(),
        "check": (site / "reference/checks.html").read_text(),
        "errcode": (site / "reference/errors.html").read_text(),
        "signal": (site / "reference/signals.html").read_text(),
    }
    from rotating_tokens.conf import DEFAULTS

    wanted = {
        "setting": sorted(DEFAULTS),
        "check": sorted(rt_reference.emitted_check_ids()),
        "errcode": sorted(c.code for c in rt_reference.collect_codes()),
        "signal": sorted(s.name for s in rt_reference.collect_signals()),
    }
    missing = [
        f"{kind} {name}"
        for kind, names in wanted.items()
        for name in names
        if f'id="{kind}-{name}"' not in pages[kind]
    ]
    for line in missing:
        print(f"not in the built reference: {line}", file=sys.stderr)
    counts = ", ".join(f"{len(names)} {kind}s" for kind, names in wanted.items())
    print(f"Reference complete: {counts}." if not missing else "Reference incomplete.")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))
