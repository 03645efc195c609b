"""Telling users what happened to their sessions: a login from a new device, and a
session ended because one of its refresh tokens was used twice (stolen).

A login is from a **new device** when its user has not logged in from the same device
within ``NEW_DEVICE_WINDOW`` (90 days by default) before it. The *device* is the
browser, operating system and device model that the user agent names (``devices.py``;
versions aside, so an update is not a new device, and the address aside, since a phone
changes address all day). Each user's devices and their last login are kept in
``KnownDevice`` (a hash of the device, not the user agent), apart from the families,
which are purged days after they end. A session stays in use for at most
``FAMILY_LIFETIME`` (30 days) before its device logs in again, so a window longer than
that never calls a device in daily use new. ``signals.new_device_login`` is sent for
it; the first login recorded for a user (a new account, or the first since notices
were turned on) is flagged ``first_login`` and gets no e-mail: there is nothing it
could be new against.

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

import hashlib
import ipaddress
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage
from django.db import DatabaseError, IntegrityError, router, transaction
from django.template.loader import render_to_string

from . import signals
from .conf import app_settings
from .devices import describe, device_key
from .models import KnownDevice, TokenFamily

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger("rotating_tokens")

NEW_DEVICE = "new_device"
# How precisely a device's last login is kept.
LAST_LOGIN_PRECISION = timedelta(hours=1)
REUSE_DETECTED = "reuse_detected"


def login_started(user: AbstractBaseUser, family: TokenFamily, *, now: datetime) -> None:
    """After a login saved ``family``: remember its device, and send the new-device
    signal and e-mail if the user had not logged in from it recently.

    Nothing is looked up unless someone listens or the e-mail is on."""
    if not (app_settings.NEW_DEVICE_EMAIL or signals.new_device_login.has_listeners()):
        return
    try:
        new, first_login = record_device(user, family.user_agent, now)
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


def record_device(user: AbstractBaseUser, user_agent: str, now: datetime) -> tuple[bool, bool]:
    """Record a login of ``user`` from the device of ``user_agent`` at ``now``.

    Returns (new: no login from it within NEW_DEVICE_WINDOW, first login recorded for
    the user). One query for a device known from the last hour, two otherwise."""
    key = hashlib.sha256(device_key(user_agent).encode("utf-8", "surrogatepass")).hexdigest()
    since = now - app_settings.NEW_DEVICE_WINDOW
    db = router.db_for_write(KnownDevice)
    devices = KnownDevice.objects.using(db).filter(user=user)  # type: ignore[misc]  # any AUTH_USER_MODEL
    last_login = devices.filter(key=key).values_list("last_login_at", flat=True).first()
    if last_login is not None:
        # Rewritten at most hourly: an hour is nothing against the window, and a
        # user who logs in again and again costs one query, not a write each time.
        if now - last_login >= LAST_LOGIN_PRECISION:
            devices.filter(key=key).update(last_login_at=now)
        return last_login < since, False
    first_login = not devices.exists()
    # Devices not seen within the window are forgotten: they would be new again anyway.
    devices.filter(last_login_at__lt=since).delete()
    try:
        with transaction.atomic(using=db):
            KnownDevice.objects.using(db).create(user=user, key=key, last_login_at=now)  # type: ignore[misc]  # any AUTH_USER_MODEL
    except IntegrityError:  # two logins from it at once: the other one recorded it
        devices.filter(key=key).update(last_login_at=now)
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
