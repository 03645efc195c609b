"""devices.py: what people call the device behind a user agent."""

from __future__ import annotations

import pytest

from rotating_tokens.devices import UNKNOWN, describe, device_key

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CHROME_LINUX_NEXT = CHROME_LINUX.replace("131.0.0.0", "132.0.6834.83")
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
CHROME_PIXEL = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.mark.parametrize(
    ("user_agent", "described"),
    [
        (CHROME_LINUX, "Chrome 131 on Linux"),
        (SAFARI_IPHONE, "Safari 17 on iPhone"),
        (SAFARI_MAC, "Safari 17 on macOS"),
        (CHROME_PIXEL, "Chrome 131 on Pixel 8"),
        (FIREFOX_WINDOWS, "Firefox 133 on Windows"),
        ("curl/8.5.0", "curl 8"),
        ("", UNKNOWN),
        (None, UNKNOWN),
        ("laptop/1.0", UNKNOWN),
        ("<script>alert(1)</script>", UNKNOWN),
    ],
)
def test_describes_the_device_for_people(user_agent, described):
    assert describe(user_agent) == described


def test_a_description_is_short_whatever_the_user_agent():
    assert len(describe("Mozilla/5.0 " + "x" * 500 + " Chrome/131.0.0.0")) <= 80


def test_an_update_of_the_browser_is_the_same_device():
    assert device_key(CHROME_LINUX) == device_key(CHROME_LINUX_NEXT)


@pytest.mark.parametrize("other", [SAFARI_IPHONE, CHROME_PIXEL, FIREFOX_WINDOWS, ""])
def test_another_browser_or_system_is_another_device(other):
    assert device_key(CHROME_LINUX) != device_key(other)
