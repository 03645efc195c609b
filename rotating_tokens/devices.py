"""What a person calls the device of a session, read from its user agent.

Parsed with ua-parser (the maintained Python port of the uap-core rules). Two views of
one user agent:

- ``describe``: a short description for people, "Chrome 131 on Linux", "Safari 17 on
  iPhone", "curl 8"; "Unknown device" when nothing is recognised. Never the raw string,
  which a client chooses freely.
- ``device_key``: what makes two logins the same device for the new-device notice
  (notices.py): the browser, the operating system and the device model, without
  versions, so a browser or system update is not a new device. The address is not
  part of it: a phone changes address all day.
"""

from __future__ import annotations

import functools

from ua_parser import parse

UNKNOWN = "Unknown device"

# Devices named after the model rather than the system ("on iPhone", not "on iOS").
_NAMED_DEVICES = ("iPhone", "iPad", "iPod")
# Device families that name no model.
_GENERIC_DEVICES = ("Other", "Generic Smartphone", "Generic Feature Phone", "Generic Tablet")
_SYSTEM_NAMES = {"Mac OS X": "macOS"}
# The longest description (a hostile user agent could make a family name of any size).
_MAX_LENGTH = 80


def _browser_name(family: str) -> str:
    # "Mobile Safari", "Chrome Mobile": the same browser as on a computer, for people.
    words = [word for word in family.split() if word != "Mobile"]
    return " ".join(words) or family


@functools.lru_cache(maxsize=1024)
def _parsed(user_agent: str) -> tuple[str, str, str, str]:
    """(browser, major version, system, device model), each "" when unknown."""
    if not user_agent:
        return "", "", "", ""
    result = parse(user_agent)
    browser = major = system = model = ""
    if result.user_agent is not None and result.user_agent.family != "Other":
        browser = _browser_name(result.user_agent.family)
        major = result.user_agent.major or ""
    if result.os is not None and result.os.family != "Other":
        system = _SYSTEM_NAMES.get(result.os.family, result.os.family)
    if result.device is not None and result.device.family not in _GENERIC_DEVICES:
        model = result.device.family
    return browser, major, system, model


def describe(user_agent: str | None) -> str:
    """A short description of the device behind ``user_agent``, for people."""
    browser, major, system, model = _parsed(user_agent or "")
    if not browser and not system:
        return UNKNOWN
    name = f"{browser} {major}".strip() if browser else ""
    # A phone is named by its model where the model says more than its system
    # ("on iPhone", "on Pixel 8"); a computer by its system ("on Linux").
    by_model = model in _NAMED_DEVICES or (system == "Android" and bool(model))
    place = model if by_model else system
    if not name:
        return place[:_MAX_LENGTH]
    return (f"{name} on {place}" if place else name)[:_MAX_LENGTH]


def device_key(user_agent: str | None) -> str:
    """Equal for two user agents of the same device (see the module docstring)."""
    browser, _major, system, model = _parsed(user_agent or "")
    return "\x1f".join((browser, system, model))
