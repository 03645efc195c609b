"""Every code example of the documentation runs: a wrong example fails the suite.

Python blocks are executed (settings fragments are checked too), and the shell
walk-throughs run against the example project served on a free port. How a page marks
its examples is in tests/docs_examples.py and docs/contributing.md.

These run in the SQLite run only: the examples do not depend on the test database (the
walk-throughs use a fresh SQLite database of the example project's own).
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from django.core.checks import ERROR, run_checks
from django.test import override_settings
from django.utils.module_loading import import_string

from rotating_tokens.conf import DEFAULTS

from .docs_examples import Example, console_steps, examples, loosely_matches

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "http://127.0.0.1:8000"

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite"),
    reason="the documentation examples run in the SQLite run only",
)

PYTHON = examples("python")
CONSOLE_PAGES = sorted({e.page for e in examples("console")})


def _namespace(example: Example) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    for name, literal in example.names.items():
        namespace[name] = ast.literal_eval(literal) if literal else mock.MagicMock(name=name)
    if "urlpatterns" in example.code:
        # A "# urls.py" fragment beside settings: Django's path() and include().
        from django.urls import include, path

        namespace.setdefault("path", path)
        namespace.setdefault("include", include)
    return namespace


@pytest.fixture
def stub_modules(request: pytest.FixtureRequest) -> Iterator[None]:
    example: Example = request.node.callspec.params["example"]
    stubs: dict[str, ModuleType] = {}
    for dotted in example.modules:
        parts = dotted.split(".")
        for depth in range(1, len(parts) + 1):
            stubs.setdefault(".".join(parts[:depth]), mock.MagicMock(name=dotted))
    with mock.patch.dict(sys.modules, stubs):
        yield


def _dotted_paths(namespace: dict[str, Any]) -> list[str]:
    """The dotted paths a settings fragment names, where Django imports them."""
    paths = [p for p in namespace.get("MIDDLEWARE", []) if isinstance(p, str)]
    paths += [p for p in namespace.get("AUTHENTICATION_BACKENDS", []) if isinstance(p, str)]
    rest = namespace.get("REST_FRAMEWORK", {})
    paths += rest.get("DEFAULT_AUTHENTICATION_CLASSES", [])
    paths += [rest[key] for key in ("EXCEPTION_HANDLER",) if key in rest]
    return paths


def _importable(dotted: str) -> None:
    """Import it, allowing only the failures of a module that needs its app installed
    (allauth's models here, where the tests do not install allauth)."""
    from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured

    with contextlib.suppress(RuntimeError, ImproperlyConfigured, AppRegistryNotReady):
        import_string(dotted)


@pytest.mark.parametrize("example", PYTHON, ids=[e.id for e in PYTHON])
def test_python_example_runs(example: Example, stub_modules: None, settings: Any) -> None:
    code = compile(example.code, example.id, "exec")
    if example.mode == "compile":
        return
    namespace = _namespace(example)
    from django.dispatch import Signal

    from rotating_tokens import signals

    ours = [s for s in vars(signals).values() if isinstance(s, Signal)]
    receivers_before = [list(signal.receivers) for signal in ours]
    try:
        exec(code, namespace)  # noqa: S102  (the project's own documentation)
    finally:
        # An example that connects a receiver must not leave it behind for other tests.
        for signal, before in zip(ours, receivers_before, strict=True):
            signal.receivers[:] = before
            signal.sender_receivers_cache.clear()
    if example.mode != "settings":
        return
    for dotted in _dotted_paths(namespace):
        _importable(dotted)
    for app in namespace.get("INSTALLED_APPS", []):
        if isinstance(app, str):
            __import__(app)
    configured = namespace.get("ROTATING_TOKENS")
    if configured is not None:
        assert set(configured) <= set(DEFAULTS), f"unknown settings in {example.id}"
        with override_settings(ROTATING_TOKENS=configured):
            errors = [
                m
                for m in run_checks(include_deployment_checks=False)
                if m.level >= ERROR and str(m.id).startswith("rotating_tokens.")
            ]
        assert errors == [], f"{example.id}: {errors}"


def test_the_docs_have_examples_of_each_kind() -> None:
    """The collector finds what the pages hold (a broken fence would hide them)."""
    assert len(PYTHON) >= 10
    assert {"settings", "exec", "compile"} <= {e.mode for e in PYTHON}
    assert "tutorials/quickstart.md" in CONSOLE_PAGES
    assert all(e.mode in ("exec", "settings", "compile") for e in PYTHON)
    # A compile-only example says which test runs its code for real.
    for example in PYTHON:
        if example.mode == "compile":
            page = (ROOT / "docs" / example.page).read_text().splitlines()
            assert "tests/" in page[example.line - 2], example.id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def example_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example project on a fresh SQLite database, under runserver on a free port."""
    folder = tmp_path_factory.mktemp("example_project")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder}/db.sqlite3",
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DJANGO_DEBUG": "1",
    }
    for name in ("REDIS_URL", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(  # noqa: S603  (our own interpreter and manage.py)
        [*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True
    )
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603  (our own interpreter and manage.py)
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/api/auth/jwks/", timeout=1)  # noqa: S310
            except urllib.error.HTTPError:
                break  # 404: it answers
            except OSError:
                time.sleep(0.2)
            else:
                break
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-throughs use curl")
@pytest.mark.parametrize("page", CONSOLE_PAGES)
def test_shell_walkthrough_runs_against_the_example_project(
    page: str, example_project: str, tmp_path: Path
) -> None:
    steps = console_steps([e for e in examples("console") if e.page == page])
    assert steps, page
    separator = "@@rotating-tokens-docs-step@@"
    script = ["set -u"]
    for step in steps:
        script.append(f"echo {separator}")
        script.append(step.command.replace(BASE_URL, example_project))
    # The walk-throughs run from a folder of their own (they leave files behind) that
    # looks like a checkout: the examples and the virtualenv are where the pages say.
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    result = subprocess.run(  # noqa: S603  (the docs' own walk-through, in bash)
        ["bash", "-c", "\n".join(script)],  # noqa: S607
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split(separator + "\n")[1:]
    assert len(outputs) == len(steps), result.stdout
    for step, output in zip(steps, outputs, strict=True):
        assert loosely_matches(step.expected, output), (
            f"{page}: $ {step.command}\nexpected: {step.expected}\ngot: {output}"
        )
