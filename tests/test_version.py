"""One version: the package's ``__version__``, the CHANGELOG's newest entry and (in
scripts/check-dist.sh) the wheel's metadata."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.version import Version

import rotating_tokens

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"


def newest_changelog_entry() -> tuple[str, str]:
    match = re.search(r"^## \[(?P<version>[^\]]+)\] - (?P<date>.+)$", CHANGELOG.read_text(), re.M)
    assert match, "CHANGELOG.md has no '## [x.y.z] - date' entry"
    return match["version"], match["date"].strip()


def test_version_is_the_changelogs_newest_entry():
    version = Version(rotating_tokens.__version__)
    entry, date = newest_changelog_entry()
    assert version.base_version == entry
    # Unreleased work carries a development version; a release carries none.
    if date == "Unreleased":
        assert version.is_devrelease, f"{version} is not a .devN version of unreleased {entry}"
    else:
        assert not version.is_prerelease and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
