"""Find the code examples of the documentation (docs/**/*.md), for tests/test_docs_examples.py.

The convention (docs/contributing.md says it for writers):

- A ```` ```python ```` block runs. The line before it may say how, in an HTML comment
  (invisible on the site): ``<!-- example: MODE; names: a, b='literal'; modules: x.y -->``.
  MODE is ``exec`` (the default: run with Django set up), ``settings`` (a settings
  fragment: run, then every dotted path it names must import, and its ``ROTATING_TOKENS``
  must pass the app's system checks) or ``compile`` (only compiled; the comment must say
  which test runs the same code for real). ``names`` are placeholders the example uses
  without defining (a mock, or the literal given); ``modules`` are stub modules (the
  project's own, such as ``myproject.mfa``).
- A ```` ```console ```` block is a shell walk-through against the example project:
  lines starting with ``$ `` are commands (a line ending in ``\\`` goes on), the lines
  after a command are its expected output, compared loosely (whitespace ignored, ``…``
  matches anything). All the console blocks of one page run in order in one shell, so
  variables carry over. ``http://127.0.0.1:8000`` is replaced by the live server's URL.
  ``<!-- example: skip (why) -->`` before a block leaves it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
MARKER = re.compile(r"^<!--\s*example:\s*(?P<spec>.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


@dataclass
class Example:
    page: str
    line: int
    lang: str
    code: str
    mode: str = "exec"
    names: dict[str, str | None] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _parse_spec(spec: str, example: Example) -> None:
    parts = [p.strip() for p in spec.split(";")]
    example.mode = parts[0].split()[0] if parts[0] else "exec"
    for part in parts[1:]:
        key, _, value = part.partition(":")
        value = re.sub(r"\(.*\)$", "", value).strip()
        if key.strip() == "names":
            for item in filter(None, (v.strip() for v in value.split(","))):
                name, eq, literal = item.partition("=")
                example.names[name.strip()] = literal.strip() if eq else None
        elif key.strip() == "modules":
            example.modules = [m.strip() for m in value.split(",") if m.strip()]


def examples(lang: str) -> list[Example]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        lines = path.read_text().splitlines()
        index = 0
        while index < len(lines):
            fence = FENCE.match(lines[index])
            if not fence or not fence.group("lang"):
                index += 1
                continue
            end = index + 1
            while end < len(lines) and lines[end] != "```":
                end += 1
            example = Example(
                str(path.relative_to(DOCS)),
                index + 1,
                fence.group("lang"),
                "\n".join(lines[index + 1 : end]) + "\n",
            )
            before = lines[index - 1] if index else ""
            marker = MARKER.match(before)
            if marker:
                _parse_spec(marker.group("spec"), example)
            if example.lang == lang and example.mode != "skip":
                found.append(example)
            index = end + 1
    return found


@dataclass
class Step:
    command: str
    expected: str


def console_steps(blocks: list[Example]) -> list[Step]:
    steps: list[Step] = []
    for block in blocks:
        lines = block.code.splitlines()
        index = 0
        while index < len(lines):
            line = lines[index]
            if not line.startswith("$ "):
                index += 1
                continue
            command = [line[2:]]
            while command[-1].endswith("\\") and index + 1 < len(lines):
                index += 1
                command.append(lines[index])
            index += 1
            expected = []
            while index < len(lines) and not lines[index].startswith("$ "):
                expected.append(lines[index])
                index += 1
            steps.append(Step("\n".join(command), "\n".join(expected)))
    return steps


def loosely_matches(expected: str, actual: str) -> bool:
    """Whitespace aside, ``actual`` is ``expected`` with each ``…`` standing for anything."""
    want = re.sub(r"\s+", "", expected)
    got = re.sub(r"\s+", "", actual)
    pattern = ".*?".join(re.escape(part) for part in want.split("…"))
    return re.fullmatch(pattern, got, flags=re.DOTALL) is not None
