"""Screenshots of the built documentation site, in Chromium: its start page and the
settings reference, saved as docs/screenshots/docs-index.png and docs-settings.png.

Run ``bash scripts/docs.sh`` first, then ``.venv/bin/python scripts/docs-screenshots.py``.
Uses Debian's Chromium (/usr/bin/chromium) through Playwright, as the browser tests do;
the pages are opened from disk, so no server is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
SHOTS = {"docs-index.png": "index.html", "docs-settings.png": "reference/settings.html"}


def main() -> int:
    if not (SITE / "index.html").exists():
        print("No site/: run bash scripts/docs.sh first.", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        for name, path in SHOTS.items():
            page.goto((SITE / path).as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(OUT / name))
            print(f"{OUT / name}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
