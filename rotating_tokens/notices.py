"""Telling users what happened to their sessions: a login from a new device, and a
session ended because one of its refresh tokens was used twice (stolen).

A login is from a **new device** when no session of the user was used, within
``NEW_DEVICE_WINDOW`` (90 days by default) before it, from the same device: the same
browser, operating system and device model as their user agents say (``devices.py``;
versions aside, so an update is not a new device, and addresses aside, since a phone
changes address all day). Every refresh token of a session records its user agent, so
"used" means logged in or refreshed. ``signals.new_device_login`` is sent for it; the
very first login of a user (no other session on record) is flagged ``first_login``
and gets no e-mail: there is nothing it could be new against.

A **stolen token**: ``signals.token_reuse_detected``, sent once per family by the
request that revoked it.

With ``NEW_DEVICE_EMAIL`` / ``REUSE_DETECTED_EMAIL`` on, the user also gets an e-mail,
through Django's mail (``EMAIL_BACKEND``, so the project's backend is used) from
``NOTICE_FROM_EMAIL``, rendered from templates a project can override:
``rotating_tokens/email/{new_device,reuse_detected}_{subject,message}.txt``. The mail
is rendered during the request, handed over once the transaction commits, and sent
by a thread of its own: a slow or failing mail server neither delays nor fails the
login (a failure is logged). No mail carries a token, a secret or a full address:
the address is cut to its network (``203.0.113.0/24``, ``2001:db8:1::/48``).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage
from django.db import DatabaseError, router, transaction
from django.template.loader import render_to_string

from . import signals
from .conf import app_settings
from .devices import describe, device_key
from .models import RefreshToken, TokenFamily

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger("rotating_tokens")

NEW_DEVICE = "new_device"
REUSE_DETECTED = "reuse_detected"


def login_started(user: AbstractBaseUser, family: TokenFamily, *, now: datetime) -> None:
    """After a login saved ``family``: the new-device signal and e-mail, if it is new.

    Nothing is looked up unless someone listens or the e-mail is on."""
    if not (app_settings.NEW_DEVICE_EMAIL or signals.new_device_login.has_listeners()):
        return
    try:
        new, first_login = _is_new_device(user, family, now)
    except DatabaseError:  # the login has happened: a notice must not undo it
        logger.warning("Could not tell whether a login is from a new device.", exc_info=True)
        return
    if not new:
        return
    device = describe(family.user_agent)
    signals.new_device_login.send(
        sender=TokenFamily,
        family=family,
        user=user,
        device=device,
        ip_address=family.ip_address,
        user_agent=family.user_agent,
        first_login=first_login,
    )
    if app_settings.NEW_DEVICE_EMAIL and not first_login:
        send_notice(
            user,
            NEW_DEVICE,
            {"device": device, "network": network_of(family.ip_address), "when": now},
        )


def _is_new_device(user: AbstractBaseUser, family: TokenFamily, now: datetime) -> tuple[bool, bool]:
    """(new device, first login of the user)."""
    recent = set(
        RefreshToken.objects.for_user(user)
        .filter(issued_at__gte=now - app_settings.NEW_DEVICE_WINDOW)
        .exclude(family=family)
        .order_by()
        .values_list("user_agent", flat=True)
        .distinct()
    )
    key = device_key(family.user_agent)
    if any(device_key(agent) == key for agent in recent):
        return False, False
    first_login = not recent and not (
        TokenFamily.objects.for_user(user).exclude(pk=family.pk).exists()
    )
    return True, first_login


def reuse_detected(
    sender: Any,
    family: TokenFamily,
    user: AbstractBaseUser,
    ip_address: str | None = None,
    user_agent: str = "",
    **kwargs: Any,
) -> None:
    """Receiver of ``token_reuse_detected``: the e-mail, when it is on."""
    if not app_settings.REUSE_DETECTED_EMAIL:
        return
    send_notice(
        user,
        REUSE_DETECTED,
        {
            # The session that ended, as its owner knows it, and whoever replayed it.
            "device": describe(family.user_agent),
            "session_name": family.name,
            "presented_by": describe(user_agent),
            "network": network_of(ip_address),
            "when": family.revoked_at,
        },
    )


def network_of(ip_address: str | None) -> str:
    """The network of an address, never the address: a /24 of IPv4, a /48 of IPv6."""
    if not ip_address:
        return ""
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def send_notice(user: AbstractBaseUser, kind: str, context: dict[str, Any]) -> None:
    """Render the ``kind`` e-mail to ``user`` now, send it after the commit, in the
    background. Never raises: a notice must not fail what it reports."""
    try:
        address = getattr(user, user.get_email_field_name(), "") or ""
        if not address:
            return
        context = {"user": user, **context}
        subject = render_to_string(f"rotating_tokens/email/{kind}_subject.txt", context)
        body = render_to_string(f"rotating_tokens/email/{kind}_message.txt", context)
        message = EmailMessage(
            # One line: a header cannot hold a newline.
            " ".join(subject.split()),
            body,
            from_email=app_settings.NOTICE_FROM_EMAIL,
            to=[address],
        )
    except Exception:
        logger.warning("Could not prepare the %s notice for user %s.", kind, user.pk, exc_info=True)
        return
    user_pk = user.pk
    transaction.on_commit(
        lambda: in_background(lambda: _deliver(message, kind, user_pk)),
        using=router.db_for_write(TokenFamily),
    )


def _deliver(message: EmailMessage, kind: str, user_pk: Any) -> None:
    try:
        message.send()
    except Exception:
        logger.warning("Could not send the %s notice to user %s.", kind, user_pk, exc_info=True)


def in_background(task: Callable[[], None]) -> None:
    """Run ``task`` in a daemon thread of its own (the tests replace this)."""
    threading.Thread(target=task, name="rotating_tokens-notice", daemon=True).start()
