"""A token strategy for django-allauth's headless "app" client (allauth 65.x).

allauth runs the flows (password, code, social and passkey login, signup, email
verification, MFA, re-authentication); this app issues, rotates and revokes the tokens::

    HEADLESS_TOKEN_STRATEGY = "rotating_tokens.contrib.allauth.strategy.RotatingTokenStrategy"

- The response that makes a user authenticated starts a family
  (``services.start_family``) and carries ``access_token``, ``refresh_token`` and
  ``expires_in`` in its ``meta``.
- ``POST /_allauth/app/v1/tokens/refresh`` rotates through ``services.rotate``: reuse
  detection, the grace period and families work as on this app's own refresh endpoint.
- Logging out through allauth revokes the family.
- DPoP (RFC 9449) as on ``POST token/``: the request that makes the user
  authenticated may carry a ``DPoP`` proof (for its own URL and method), which binds
  the family to its key (``token_type`` "DPoP"); with ``DPOP = "required"`` one
  without a proof is refused (400 ``dpop_required``) and starts no family, and a
  proof that is sent but refused is 400 ``dpop_invalid``, never a bearer login.
  Refreshes and access tokens of a bound family need proofs by its key, here too, and
  its session token alone reaches no authenticated session (``lookup_session``).
- "Remember me": allauth's ``ACCOUNT_SESSION_REMEMBER`` when it is True or False;
  when it is None (ask the user), ``"remember": false`` in the JSON body of the login
  request (or of the request that finishes it: an MFA code, a login code) starts a
  family that is not remembered (``services.start_family``).

allauth keeps its state (a login waiting for its MFA code, recent authentications for
re-authentication) in a Django session, which an app names with ``X-Session-Token``.
Once a family is started its session is moved to a key derived from the family's id
(an HMAC under ``SECRET_KEY``, so that nobody who reads the id in an access token can
compute it), and the session lives exactly as long as the family. So an access token
finds its session without any lookup table, and the session ends with the family:
``lookup_session`` refuses the session of a revoked family, and a revocation deletes
it (from processes where this module has been imported, which allauth does on its
first request).
"""

from __future__ import annotations

import json
import uuid
from importlib import import_module
from typing import TYPE_CHECKING, Any

from allauth.account import app_settings as account_settings  # type: ignore[import-untyped]
from allauth.core import context  # type: ignore[import-untyped]
from allauth.core.exceptions import ImmediateHttpResponse  # type: ignore[import-untyped]
from allauth.headless.internal.restkit.response import (  # type: ignore[import-untyped]
    APIResponse,
)
from allauth.headless.tokens.strategies.base import (  # type: ignore[import-untyped]
    AbstractTokenStrategy,
)
from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout, user_logged_out
from django.contrib.sessions.backends.base import CreateError, SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from rotating_tokens import revocation, services, signals
from rotating_tokens.authentication import AccessTokenAuthentication
from rotating_tokens.clients import client_from_request, dpop_proof
from rotating_tokens.conf import app_settings
from rotating_tokens.dpop import Proof
from rotating_tokens.exceptions import DPoPError, TokenError
from rotating_tokens.models import RevokeReason, TokenFamily

if TYPE_CHECKING:
    from django.http import HttpRequest

#: The session entry that names the family of an authenticated app session.
FAMILY_SESSION_KEY = "rotating_tokens_family"
#: The "remember" a login request said, kept for the request that finishes the login.
REMEMBER_SESSION_KEY = "rotating_tokens_remember"

_KEY_SALT = "rotating_tokens.contrib.allauth.session_key"
_ISSUED = "_rotating_tokens_issued"  # the TokenPair a request started, on the request
_ACCESS_FAMILY = "_rotating_tokens_access_family"  # what its access token proved, on it
#: Set in the session of a DPoP-bound family.
DPOP_SESSION_KEY = "rotating_tokens_dpop"


class RotatingTokenStrategy(AbstractTokenStrategy):  # type: ignore[misc]  # allauth is untyped
    """allauth's session token for the flows, this app's tokens once authenticated.

    Every authenticated app session belongs to a live family: a session without one
    (a browser's session key sent as ``X-Session-Token``) or of a revoked family is
    treated as gone, as allauth treats an expired session (410).
    """

    # Hooks -------------------------------------------------------------------------

    def get_client(self, request: HttpRequest) -> services.Client:
        """Who sent the request, as the grace period and the family record it."""
        return client_from_request(request)

    def get_remember(self, request: HttpRequest) -> bool:
        """Whether the family this request starts is remembered (see the module
        docstring). Anything but ``false`` is yes: allauth does not let the strategy
        answer 400, and a typo must not end a session sooner than the user asked."""
        setting = account_settings.SESSION_REMEMBER
        if setting is not None:
            return bool(setting)
        said = _remember_in_body(request)
        if said is None:
            said = request.session.get(REMEMBER_SESSION_KEY)
        return said is not False

    def get_token_payload(self, pair: services.TokenPair) -> dict[str, Any]:
        """What the ``meta`` of the response that logs a user in carries. Override to
        add fields."""
        expires_in = (pair.access_expires_at - timezone.now()).total_seconds()
        return {
            "access_token": pair.access,
            "refresh_token": pair.refresh,
            "token_type": pair.token_type,
            "expires_in": max(0, int(expires_in)),
        }

    def get_login_proof(self, request: HttpRequest) -> Proof | None:
        """The DPoP proof the family is bound with, or None for a bearer family, as
        ``POST token/`` decides (``services.login_binding``). Raises DPoPError."""
        if app_settings.DPOP == "off":
            return None  # the header is not even read
        return services.login_binding(dpop_proof(request))

    # allauth's interface -----------------------------------------------------------

    def get_session_token(self, request: HttpRequest) -> str | None:
        """``X-Session-Token`` if sent, else the session of the access token's family.

        The access token is checked by ``AccessTokenAuthentication``, as on the app's
        own API: signature, expiry, and a family that is not revoked. A token it
        refuses leaves the request anonymous (allauth then answers 401)."""
        session_token = super().get_session_token(request)
        if session_token:
            return session_token
        family_id = _access_token_family(request)
        if family_id is None:
            return None
        return _existing_session_key(family_id)

    def lookup_session(self, session_token: str) -> SessionBase | None:
        session = _session_store(session_token)
        # Loading a missing or expired session clears its key (one query, not two).
        session.get(SESSION_KEY)
        if session.session_key is None:
            return None
        if SESSION_KEY not in session:
            return session  # a login in progress: an MFA stage, an email verification…
        family_id = session.get(FAMILY_SESSION_KEY)
        if family_id is None:
            return None
        # The session names its user by pk; the family state by USER_ID_FIELD.
        owner = services.token_user_id(session[SESSION_KEY])
        if not revocation.allows_access(family_id, user_id=owner or ""):
            # Revoked where this module was not loaded to delete it, or expired.
            session.delete()
            return None
        if session.get(DPOP_SESSION_KEY) and not _proven_by_access_token(family_id):
            # A bound family's session token is a bearer secret (it is in the login's
            # answer, next to the bound tokens): alone it reaches no authenticated
            # session, only with the family's access token and a proof by its key. An
            # empty session rather than "gone" (410): a refresh still works with it.
            return _unproven_session()
        # So that a password change made through this request spares its own family,
        # as it does on requests that AccessTokenAuthentication authenticated.
        services.set_current_family(family_id)
        return session

    def create_session_token(self, request: HttpRequest) -> str:
        session = request.session
        if _is_authenticated(request):
            family_id = session.get(FAMILY_SESSION_KEY)
            if family_id is None:
                # The request that authenticated the user: allauth asks for the
                # session token first, and the token names the family's session.
                family_id = self._start_family(request).family.pk
            # Django gives a session a new random key on a password change
            # (update_session_auth_hash); it goes back to its family's key.
            _move_session(session, _session_key(family_id))
        else:
            # A login waiting for a second step: keep what it said for that step.
            said = _remember_in_body(request)
            if said is not None:
                session[REMEMBER_SESSION_KEY] = said
        if not session.session_key:
            session.save()
        key = session.session_key
        assert key is not None  # saved just now
        return key

    def create_access_token_payload(self, request: HttpRequest) -> dict[str, Any] | None:
        """Called once, by the response that made the user authenticated."""
        if not _is_authenticated(request):
            return None
        pair = getattr(request, _ISSUED, None) or self._start_family(request)
        return self.get_token_payload(pair)

    def refresh_token(self, refresh_token: str) -> tuple[str, str] | None:
        """Rotate through ``services.rotate``. allauth answers ``None`` with its own
        error (400, ``{"status": 400}``): the reason (``token_reused``,
        ``token_expired``…) has no place in it, so the app learns only that it must
        log in again."""
        request = context.request
        if request is None:
            # AccountMiddleware sets it, and allauth refuses to start without it.
            raise ImproperlyConfigured(
                "RotatingTokenStrategy needs allauth.account.middleware.AccountMiddleware."
            )
        try:
            pair = services.rotate(
                refresh_token, self.get_client(request), dpop=dpop_proof(request)
            )
        except TokenError:
            # Returned, not raised: with ATOMIC_REQUESTS an exception would roll back
            # the revocation that reuse detection has just made.
            return None
        return pair.access, pair.refresh

    # -------------------------------------------------------------------------------

    def _start_family(self, request: HttpRequest) -> services.TokenPair:
        try:
            proof = self.get_login_proof(request)
        except DPoPError as refused:
            # allauth has logged the user in already: undo it, so that no session is
            # left authenticated without a family. Then answer 400 with the code in
            # allauth's error shape. allauth lets an ImmediateHttpResponse through
            # its login flow only if it carries one of its APIResponses (any other
            # it swallows, answering 401 "not authenticated" with no reason), and
            # AccountMiddleware turns it into the answer.
            logout(request)
            errors = [{"message": str(refused.message), "code": refused.code}]
            raise ImmediateHttpResponse(APIResponse(request, errors=errors, status=400)) from None
        session = request.session
        pair = services.start_family(
            request.user,  # type: ignore[arg-type]  # authenticated
            self.get_client(request),
            dpop=proof,
            remember=self.get_remember(request),
        )
        session.pop(REMEMBER_SESSION_KEY, None)
        setattr(request, _ISSUED, pair)
        replaced = session.get(FAMILY_SESSION_KEY)
        session[FAMILY_SESSION_KEY] = str(pair.family.pk)
        if proof is not None:
            session[DPOP_SESSION_KEY] = True
        else:
            session.pop(DPOP_SESSION_KEY, None)
        session.set_expiry(pair.family.expires_at)
        _move_session(session, _session_key(pair.family.pk))
        if replaced is not None:  # a session is one login: the old one is over
            _revoke(replaced, RevokeReason.LOGOUT)
        return pair


def _access_token_family(request: HttpRequest) -> str | None:
    """The family of the request's access token, checked by ``AccessTokenAuthentication``
    (a bound one with its proof), or None. Once per request: a DPoP proof is accepted
    once, so a second verification would be a replay."""
    known = getattr(request, _ACCESS_FAMILY, None)
    if known is None:
        try:
            authenticated = AccessTokenAuthentication().authenticate(Request(request))
        except AuthenticationFailed:
            authenticated = None
        # None possible only with CHECK_FAMILY_ON_ACCESS off.
        family_id = authenticated[1].get(app_settings.FAMILY_CLAIM) if authenticated else None
        known = "" if family_id is None else str(family_id)
        setattr(request, _ACCESS_FAMILY, known)
    return known or None


def _proven_by_access_token(family_id: Any) -> bool:
    request = context.request
    return request is not None and _access_token_family(request) == str(family_id)


def _remember_in_body(request: HttpRequest) -> bool | None:
    """The boolean ``remember`` of the request's JSON body, or None."""
    if request.content_type != "application/json":
        return None
    try:
        body = json.loads(request.body)
    except (ValueError, RawPostDataException):
        return None
    said = body.get("remember") if isinstance(body, dict) else None
    return said if isinstance(said, bool) else None


def _is_authenticated(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


# The family's session ------------------------------------------------------------------


def _session_engine() -> str:
    engine: str = settings.SESSION_ENGINE
    if engine == "django.contrib.sessions.backends.signed_cookies":
        raise ImproperlyConfigured(
            "RotatingTokenStrategy needs sessions stored on the server (SESSION_ENGINE): "
            "a session held by the client cannot be ended when its family is revoked, "
            "nor stored under a key of our choosing."
        )
    return engine


_UNPROVEN_SESSION_KEY = "_rotating_tokens_unproven"


def _session_store(session_key: str | None = None) -> SessionBase:
    store: SessionBase = import_module(_session_engine()).SessionStore(session_key)
    return store


def _unproven_session() -> SessionBase:
    """A session with no user in it, for a bound family's session token presented
    without its proof. Not empty: allauth answers an empty one (falsy from Django 6.1
    on) with 410 Gone, which would tell the client its session is over. Never saved,
    so it holds nothing and creates no row."""
    store = _session_store()
    store[_UNPROVEN_SESSION_KEY] = True
    store.modified = False
    store.save = _never_saved  # type: ignore[method-assign]
    return store


def _never_saved(*args: Any, **kwargs: Any) -> None:
    return None


def _session_key(family_id: Any, secret: str | bytes | None = None) -> str:
    """The key of a family's session: unguessable without ``SECRET_KEY`` (``None``)
    or the fallback given. 160 bits, as hex: valid for every session backend."""
    value = str(uuid.UUID(str(family_id)))
    return salted_hmac(_KEY_SALT, value, secret=secret, algorithm="sha256").hexdigest()[:40]


def _session_keys(family_id: Any) -> list[str]:
    """The family's session key under ``SECRET_KEY`` and each of its fallbacks."""
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", [])
    return [_session_key(family_id), *(_session_key(family_id, key) for key in fallbacks)]


def _existing_session_key(family_id: Any) -> str:
    keys = _session_keys(family_id)
    if len(keys) > 1:
        # SECRET_KEY was rotated: a session made before keeps its key until it next
        # changes (create_session_token then moves it). Costs a query per key tried.
        store = _session_store()
        for key in keys:
            if store.exists(key):
                return key
    return keys[0]


def _move_session(session: SessionBase, key: str) -> None:
    """Store ``session`` under ``key`` and delete it under its old key (what Django's
    ``cycle_key`` does, with a key of our choosing)."""
    _session_engine()
    old = session.session_key
    if old == key:
        return
    session.keys()  # loaded before the key changes: loading would read the new one
    session._session_key = key
    try:
        session.save(must_create=True)
    except CreateError:  # already there (two requests of the family at once)
        session.save()
    if old:
        session.delete(old)


# Receivers: connected when allauth first loads the strategy ----------------------------


def _revoke(family_id: Any, reason: str) -> None:
    family = TokenFamily.objects.filter(pk=family_id).first()
    if family is not None:
        services.revoke_family(family, reason)


def revoke_family_on_logout(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    """allauth's logout (``DELETE …/auth/session``) revokes the session's family."""
    session = getattr(request, "session", None)
    family_id = session.get(FAMILY_SESSION_KEY) if session is not None else None
    if family_id is not None:
        _revoke(family_id, RevokeReason.LOGOUT)


def end_session_of_revoked_family(sender: Any, family: TokenFamily, **kwargs: Any) -> None:
    """A revoked family's session goes too, once the revocation has committed."""
    keys = _session_keys(family.pk)

    def delete() -> None:
        store = _session_store()
        for key in keys:
            store.delete(key)

    transaction.on_commit(delete, using=router.db_for_write(TokenFamily))


user_logged_out.connect(revoke_family_on_logout, dispatch_uid=f"{__name__}.logout")
signals.family_revoked.connect(
    end_session_of_revoked_family, sender=TokenFamily, dispatch_uid=f"{__name__}.revoked"
)
