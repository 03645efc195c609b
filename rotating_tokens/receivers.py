"""Revocation follows the account: a password change or a deactivation ends the
user's sessions. Connected in ``AppConfig.ready()`` to the user model's signals.

The values a user was loaded with are remembered on the instance (``post_init``), so
a save compares in memory: an ordinary user save costs no extra query, and one whose
``update_fields`` leave out ``password`` and ``is_active`` (``update_last_login``)
is not even looked at. ``QuerySet.update()`` sends no signal and is not seen.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db.models import Model
from django.db.models.signals import post_delete, post_init, post_save, pre_save
from django.utils import timezone

from . import notices, revocation, services, signals
from .conf import app_settings
from .models import RevokeReason, TokenFamily

WATCHED = ("password", "is_active")
_LOADED = "_rotating_tokens_loaded"  # {field: value} as loaded from the database
_CHANGES = "_rotating_tokens_changes"  # what the save in progress changes


def connect() -> None:
    user_model = get_user_model()
    post_init.connect(remember_loaded_values, sender=user_model, dispatch_uid=_LOADED)
    pre_save.connect(detect_account_changes, sender=user_model, dispatch_uid=_CHANGES)
    post_save.connect(revoke_on_account_change, sender=user_model, dispatch_uid=__name__)
    # A deleted family (the user deleted, say) is refused like a revoked one by the
    # processes that knew it: its deletion goes in the revocation log.
    post_delete.connect(log_deleted_family, sender=TokenFamily, dispatch_uid=f"{__name__}.deleted")
    # The family that AccessTokenAuthentication recorded belongs to one request only.
    request_started.connect(forget_current_family, dispatch_uid=f"{__name__}.started")
    request_finished.connect(forget_current_family, dispatch_uid=f"{__name__}.finished")
    # The user hears of a stolen token (an e-mail, when REUSE_DETECTED_EMAIL is on).
    signals.token_reuse_detected.connect(
        notices.reuse_detected, sender=TokenFamily, dispatch_uid=f"{__name__}.reuse"
    )


def log_deleted_family(
    sender: type[Model], instance: TokenFamily, using: str, **kwargs: Any
) -> None:
    # Inside the deletion's transaction: logged if and only if the deletion commits.
    revocation.record([instance.pk], db=using, now=timezone.now())


def forget_current_family(**kwargs: Any) -> None:
    services.set_current_family(None)


@functools.cache
def _watched_fields(model: type[Model]) -> tuple[str, ...]:
    names = {field.attname for field in model._meta.concrete_fields}
    return tuple(name for name in WATCHED if name in names)


def remember_loaded_values(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    # Only what is already in __dict__: reading a deferred field would cost a query.
    values = instance.__dict__
    values[_LOADED] = {name: values[name] for name in _watched_fields(sender) if name in values}


def detect_account_changes(
    sender: type[Model],
    instance: Model,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    instance.__dict__.pop(_CHANGES, None)
    if raw or instance._state.adding:
        return
    fields = [f for f in _watched_fields(sender) if update_fields is None or f in update_fields]
    if not fields:
        return
    old = dict(instance.__dict__.get(_LOADED, {}))
    unknown = [f for f in fields if f not in old]
    if unknown:  # deferred when the user was loaded: the database knows
        row = sender._base_manager.using(using).filter(pk=instance.pk).values(*unknown).first()
        if row is None:
            return
        old.update(row)
    changes = set()
    if "password" in fields and instance.password != old["password"]:  # type: ignore[attr-defined]
        changes.add(RevokeReason.PASSWORD_CHANGE)
    if "is_active" in fields and old["is_active"] and not instance.is_active:  # type: ignore[attr-defined]
        changes.add(RevokeReason.USER_DEACTIVATED)
    instance.__dict__[_CHANGES] = changes


def revoke_on_account_change(
    sender: type[Model],
    instance: Model,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    changes = instance.__dict__.pop(_CHANGES, set())
    # What the database holds now is what the next save compares with.
    loaded = instance.__dict__.setdefault(_LOADED, {})
    for name in _watched_fields(sender):
        if (update_fields is None or name in update_fields) and name in instance.__dict__:
            loaded[name] = instance.__dict__[name]
    families = TokenFamily.objects.for_user(instance)  # type: ignore[arg-type]
    if RevokeReason.USER_DEACTIVATED in changes:
        services.revoke_families(families, RevokeReason.USER_DEACTIVATED)
        # And the simplejwt tokens not converted yet, during the transition: they
        # carry no family, so a reactivation must not bring them back either.
        services.end_simplejwt_tokens(instance)  # type: ignore[arg-type]
    elif RevokeReason.PASSWORD_CHANGE in changes and app_settings.REVOKE_ON_PASSWORD_CHANGE:
        services.end_simplejwt_tokens(instance)  # type: ignore[arg-type]
        # The request that changed the password keeps its own session, as Django's
        # update_session_auth_hash() keeps the session of the one who changed it.
        current = services.current_family_id()
        if current is not None:
            families = families.exclude(pk=current)
        services.revoke_families(families, RevokeReason.PASSWORD_CHANGE)
