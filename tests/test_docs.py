"""The documentation cannot fall behind the code: every setting, system check, error code
and signal has the documentation its reference page is generated from, and the README
stays a front door (the site holds the rest)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.dispatch import Signal

from rotating_tokens import conf, signals
from rotating_tokens.exceptions import TokenError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import rt_reference  # noqa: E402


@pytest.mark.parametrize("name", sorted(conf.DEFAULTS))
def test_every_setting_has_a_typed_documented_property(name):
    prop = getattr(conf.Settings, name, None)
    assert isinstance(prop, property), f"{name} has no property in conf.Settings"
    assert prop.fget.__doc__ and len(prop.fget.__doc__.split()) >= 4, f"{name}: no docstring"
    assert prop.fget.__annotations__.get("return"), f"{name}: no return type"


def test_the_settings_reference_lists_every_setting_with_type_and_default():
    documented = {s.name: s for s in rt_reference.collect_settings()}
    assert set(documented) == set(conf.DEFAULTS)
    assert all(s.type and s.default and s.doc for s in documented.values())
    # The checks a setting lists are found in the checks' own messages, or in conf.py's
    # table for messages that name the setting only through a placeholder.
    assert "rotating_tokens.W001" in documented["REUSE_GRACE_PERIOD"].checks
    assert "rotating_tokens.E070" in documented["NEW_DEVICE_WINDOW"].checks


def test_setting_checks_table_names_real_checks_of_real_settings():
    emitted = rt_reference.emitted_check_ids()
    for name, ids in conf.SETTING_CHECKS.items():
        assert name in conf.DEFAULTS
        assert set(ids) <= emitted, (name, set(ids) - emitted)


def test_every_check_id_is_in_the_reference_with_its_message():
    emitted = rt_reference.emitted_check_ids()
    documented = {c.id: c for c in rt_reference.collect_checks()}
    assert len(emitted) > 40
    assert set(documented) == emitted
    assert all(c.msg.strip() for c in documented.values())


def test_check_messages_show_computed_parts_as_placeholders():
    by_id = {c.id: c for c in rt_reference.collect_checks()}
    assert by_id["rotating_tokens.E003"].msg == "Unknown TOKEN_HASHER {TOKEN_HASHER}."
    assert by_id["rotating_tokens.W083"].deploy  # registered with deploy=True
    assert not by_id["rotating_tokens.E001"].deploy


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_code_is_in_the_reference_with_a_status_and_a_meaning():
    documented = {c.code: c for c in rt_reference.collect_codes()}
    from rotating_tokens import exceptions

    raised = {cls.code for cls in _subclasses(TokenError)} | {
        cls.default_code
        for cls in vars(exceptions).values()
        if isinstance(cls, type)
        and cls.__module__ == exceptions.__name__
        and hasattr(cls, "default_code")
    }
    literal = set(rt_reference._literal_codes())
    schema = {c.code for c in documented.values() if any(c.statuses.values())}
    assert raised | literal | schema <= set(documented)
    for code in raised | literal | schema:
        assert documented[code].statuses, f"{code}: no HTTP status"
        assert documented[code].meaning, f"{code}: no meaning"
    assert {"token_reused", "csrf_failed", "dpop_required", "throttled"} <= set(documented)


def test_every_signal_is_in_the_reference_with_its_arguments():
    defined = {name for name, value in vars(signals).items() if isinstance(value, Signal)}
    documented = {s.name: s for s in rt_reference.collect_signals()}
    assert set(documented) == defined
    assert all(s.when and s.arguments for s in documented.values())


def test_every_endpoint_has_an_example_request_and_response():
    operations = rt_reference.collect_operations()
    assert len(operations) >= 10
    for op in operations:
        assert any(status.startswith("2") for status, *_ in op.responses), op.path
    rendered = rt_reference.render_operations()
    assert rendered.count("Example request:") == len(operations)
    assert rendered.count("Example response") == len(operations)


def test_readme_fits_on_a_screen_or_two():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the rest into docs/"
