"""Authenticating a request by its access token, in any framework.

``authenticate_request`` is the one place an access token is checked: the DRF class
(``authentication.AccessTokenAuthentication``), the async decorator
(``decorators.access_token_required``), adrf's views, the Django Ninja auth
(``contrib.ninja``) and the WebSocket consumer (``contrib.channels``) all call it, or
its async twin ``aauthenticate_request``, and none repeats a check. It takes what any
transport has (the ``Authorization`` and ``DPoP`` header values, the method and the
URL) and checks, in this order:

1. the header: ``Bearer <token>`` (simplejwt's ``AUTH_HEADER_TYPES``) or
   ``DPoP <token>``; anything else is not ours (None, so other schemes can be tried);
2. the token as simplejwt checks it (signature, expiry, token type), or with a key of
   ``VERIFYING_KEY_FALLBACKS``;
3. its family (``CHECK_FAMILY_ON_ACCESS``): not revoked, not expired, and the token's
   user's; a token without one only while ``ACCEPT_SIMPLEJWT_UNTIL`` accepts it;
4. its DPoP binding (``cnf.jkt``): sent as ``DPoP``, with a proof of this method and
   URL, by that key, carrying the token's hash, never seen before (RFC 9449 section 7);
5. its user, as simplejwt's ``JWTAuthentication.get_user`` finds it (exists, active…).

A refusal is ``exceptions.AccessRefused`` with the ``code`` the DRF views answer.
"""

from __future__ import annotations

import hmac
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import HTTP_HEADER_ENCODING, status
from rest_framework import exceptions as drf_exceptions
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPES, JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenBackendError, TokenError
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from . import dpop, keys, legacy, revocation, services
from .clients import log_refused, verify_dpop_header
from .conf import app_settings
from .dpop import Proof
from .exceptions import AccessRefused, DPoPError, DPoPInvalid, DPoPRequired, ServiceUnavailable
from .services import ReplayStoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest
    from rest_framework_simplejwt.tokens import Token

DPOP_SCHEME = b"DPoP"


class Access(NamedTuple):
    """What an accepted access token stands for: ``user, token, family_id = access``."""

    user: AbstractBaseUser
    token: Token
    #: The token's family (None: a simplejwt token accepted while the project migrates,
    #: or ``CHECK_FAMILY_ON_ACCESS`` off and no family claim).
    family_id: uuid.UUID | None


def authenticate_request(
    authorization: str | bytes | None,
    dpop_header: str | None = None,
    *,
    method: str,
    url: str | Callable[[], str],
    client_address: str | Callable[[], str | None] | None = None,
) -> Access | None:
    """Check an access token completely; the ``Access`` it grants, or None when
    ``authorization`` is absent or of another scheme (``Basic …``: not ours to refuse).

    ``url`` is the request's full URL as the client addressed it (scheme, host, path;
    the query is ignored), what a DPoP proof's ``htu`` must name. ``client_address``
    only goes into the log line of a refused proof. Either may be a function that
    computes it: it is called only for a bound token or a refusal that is logged.
    Raises ``AccessRefused``; may query the database (the user; the family when this
    process does not know it).
    """
    parsed = _raw_token(authorization)
    if parsed is None:
        return None
    raw_token, dpop_scheme = parsed
    token = validated_token(raw_token)
    family_id = _checked_family(token, _family_allows_access)
    jkt = _bound_key(token, dpop_scheme, method=method, url=url, client_address=client_address)
    if jkt is not None:
        _check_proof(
            jkt,
            raw_token,
            dpop_header,
            method,
            _resolved(url),
            _resolved(client_address),
            check_replay=True,
        )
    return Access(user_of(token), token, family_id)


def _resolved(value: Any) -> Any:
    return value() if callable(value) else value


async def aauthenticate_request(
    authorization: str | bytes | None,
    dpop_header: str | None = None,
    *,
    method: str,
    url: str | Callable[[], str],
    client_address: str | Callable[[], str | None] | None = None,
) -> Access | None:
    """``authenticate_request`` for async code, with the same checks and answers.

    The signature, the family (from this process's deny-list, ``revocation.py``) and
    the proof's signature are checked on the event loop; what needs the database or
    the cache (the user row, the proof's ``jti``) goes through ``sync_to_async`` in one
    hop, and so does the whole check when the deny-list cannot answer from memory (it
    is older than ``REVOCATION_POLL_INTERVAL``, or the family is new to this process)."""
    parsed = _raw_token(authorization)
    if parsed is None:
        return None
    raw_token, dpop_scheme = parsed
    token = validated_token(raw_token)
    try:
        family_id = _checked_family(token, _family_allows_access_in_memory)
    except _NeedsDatabase:
        return await sync_to_async(authenticate_request)(
            authorization, dpop_header, method=method, url=url, client_address=client_address
        )
    jkt = _bound_key(token, dpop_scheme, method=method, url=url, client_address=client_address)
    proof = None
    if jkt is not None:
        proof = _check_proof(
            jkt,
            raw_token,
            dpop_header,
            method,
            _resolved(url),
            _resolved(client_address),
            check_replay=False,
        )
    user = await sync_to_async(_replay_checked_user)(
        token, proof, method=method, url=url, client_address=client_address
    )
    return Access(user, token, family_id)


def authenticate_http_request(request: HttpRequest) -> Access | None:
    """``authenticate_request`` for a Django request: its headers, method and URL."""
    return authenticate_request(**_request_arguments(request))


async def aauthenticate_http_request(request: HttpRequest) -> Access | None:
    """``aauthenticate_request`` for a Django request (an async view's)."""
    return await aauthenticate_request(**_request_arguments(request))


def _request_arguments(request: HttpRequest) -> dict[str, Any]:
    from .clients import client_address, request_url

    return {
        "authorization": request.META.get(simplejwt_settings.AUTH_HEADER_NAME),
        "dpop_header": request.META.get("HTTP_DPOP"),
        "method": request.method or "",
        "url": lambda: request_url(request),
        "client_address": lambda: client_address(request),
    }


def default_challenge() -> str:
    """The ``WWW-Authenticate`` of a 401 that is not about a proof: simplejwt's Bearer
    challenge, and the DPoP scheme's beside it unless ``DPOP`` is off."""
    bearer = f'{AUTH_HEADER_TYPES[0]} realm="{JWTAuthentication.www_authenticate_realm}"'
    if app_settings.DPOP == "off":
        return bearer
    return f"{bearer}, {dpop.www_authenticate(app_settings.DPOP_ALGORITHMS)}"


def not_authenticated() -> AccessRefused:
    """The refusal of a request that sent no access token, as DRF words it."""
    error = drf_exceptions.NotAuthenticated()
    return AccessRefused(str(error.detail), "not_authenticated")


# The family: the one place that asks whether a family still allows access ------------


class _NeedsDatabase(Exception):
    """This process cannot tell from memory whether the family allows access."""


def _family_allows_access(family_id: Any, user_id: Any) -> bool:
    return revocation.allows_access(family_id, user_id=user_id)


def _family_allows_access_in_memory(family_id: Any, user_id: Any) -> bool:
    # This process's deny-list and what it knows of the family: no query, no wait. When
    # they cannot answer (the deny-list is older than the poll interval, or the family
    # is not known here yet), the whole check runs in a thread.
    allowed = revocation.allows_access_in_memory(family_id, user_id=user_id)
    if allowed is None:
        raise _NeedsDatabase
    return allowed


def _checked_family(token: Token, allows: Callable[[Any, Any], bool]) -> uuid.UUID | None:
    family_id = token.get(app_settings.FAMILY_CLAIM)
    if not app_settings.CHECK_FAMILY_ON_ACCESS:
        return _as_uuid(family_id)
    if family_id is None:
        if legacy.accepting(timezone.now()):
            return None  # a simplejwt access token, while the project migrates
        # Not one of ours (an old simplejwt token, say): it has no family that could
        # have ended, so "this session has ended" would be untrue.
        raise AccessRefused(_("The access token is not valid."), "token_invalid")
    # The family must also be the token's user's: the pair is checked from the same
    # cache entry, at no extra cost. A claim that is no UUID names no family of ours.
    family = _as_uuid(family_id)
    user_id = token.get(simplejwt_settings.USER_ID_CLAIM)
    if family is None or not allows(family, user_id if user_id is not None else ""):
        raise AccessRefused(_("This session has ended. Please log in again."), "token_revoked")
    return family


def check_family(token: Token) -> uuid.UUID | None:
    """Step 3 alone: the token's family allows access (may query the database)."""
    return _checked_family(token, _family_allows_access)


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None


# The header, the token and its user: simplejwt's checks --------------------------------


def _raw_token(authorization: str | bytes | None) -> tuple[bytes, bool] | None:
    if authorization is None:
        return None
    header = (
        authorization.encode(HTTP_HEADER_ENCODING)
        if isinstance(authorization, str)
        else authorization
    )
    parts = header.split()
    dpop_scheme = len(parts) > 0 and parts[0].lower() == DPOP_SCHEME.lower()
    if dpop_scheme:
        if len(parts) != 2:
            raise AccessRefused(
                _("Authorization header must contain two space-delimited values"),
                "bad_authorization_header",
            )
        return parts[1], True
    try:
        raw = _simplejwt().get_raw_token(header)
    except drf_exceptions.AuthenticationFailed as refused:
        raise _refused(refused) from None
    return None if raw is None else (raw, False)


_simplejwt_authentication: JWTAuthentication | None = None


def _simplejwt() -> JWTAuthentication:
    """One simplejwt authentication for the process (making one costs a user model
    lookup): its methods read simplejwt's settings live; only the user model is kept,
    and a change of AUTH_USER_MODEL (tests) makes a new one."""
    global _simplejwt_authentication
    if _simplejwt_authentication is None:
        _simplejwt_authentication = JWTAuthentication()
    return _simplejwt_authentication


@receiver(setting_changed)
def _forget_simplejwt_authentication(setting: str, **kwargs: Any) -> None:
    global _simplejwt_authentication
    if setting in ("AUTH_USER_MODEL", "SIMPLE_JWT"):
        _simplejwt_authentication = None


def validated_token(raw_token: bytes) -> Token:
    """simplejwt's checks (signature, expiry, token type), or the same with a key that
    ``VERIFYING_KEY_FALLBACKS`` still lists. The family is not checked here."""
    try:
        try:
            return _simplejwt().get_validated_token(raw_token)
        except InvalidToken:
            # Signed with an earlier key that VERIFYING_KEY_FALLBACKS still lists?
            fallback = _validated_with_fallback_key(raw_token)
            if fallback is None:
                raise
            return fallback
    except drf_exceptions.AuthenticationFailed as refused:
        raise _refused(refused) from None


def _validated_with_fallback_key(raw_token: bytes) -> Token | None:
    """The token, if it names a key of ``VERIFYING_KEY_FALLBACKS`` and verifies with
    it; None if it names none of them."""
    try:
        raw = raw_token.decode() if isinstance(raw_token, bytes) else str(raw_token)
    except UnicodeDecodeError:
        return None  # not a JWT: simplejwt's own refusal stands
    backend = keys.fallback_backend_for(raw)
    if backend is None:
        return None
    try:
        backend.decode(raw, verify=True)  # signature, expiry, audience, issuer
        token = AccessToken(raw, verify=False)  # type: ignore[arg-type]  # a str, as simplejwt takes
        token.verify()  # the token type and simplejwt's other checks
    except (TokenError, TokenBackendError):
        raise InvalidToken(
            {"detail": _("Given token not valid for any token type"), "messages": []}
        ) from None
    return token


def user_of(token: Token) -> AbstractBaseUser:
    """simplejwt's lookup by ``USER_ID_FIELD`` (``CHECK_USER_IS_ACTIVE``,
    ``CHECK_REVOKE_TOKEN``), where a claim that is not a value of that field (a token
    signed before the setting changed) is no such user, not a 500."""
    try:
        return _simplejwt().get_user(token)
    except drf_exceptions.AuthenticationFailed as refused:
        raise _refused(refused) from None
    except (ValidationError, ValueError, TypeError):
        raise AccessRefused(_("User not found"), "user_not_found") from None


def _refused(error: drf_exceptions.AuthenticationFailed) -> AccessRefused:
    """simplejwt's refusal as the app's, keeping it for the DRF views to raise."""
    detail: Any = error.detail
    if isinstance(detail, dict):
        code = detail.get("code") or error.default_code
        detail = detail.get("detail", error.default_detail)
    else:
        code = getattr(detail, "code", None) or error.default_code
    return AccessRefused(str(detail), str(code), cause=error)


# The DPoP binding (RFC 9449 section 7) --------------------------------------------------


def _bound_key(
    token: Token, dpop_scheme: bool, *, method: str, url: Any, client_address: Any
) -> str | None:
    """The key the token is bound to (``cnf.jkt``), after checking the scheme fits."""
    cnf = token.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not jkt:
        if dpop_scheme:  # RFC 9449 section 7.1: DPoP is for bound tokens only
            raise AccessRefused(
                _("This access token is not bound to a key: send it as Bearer."),
                "token_invalid",
            )
        return None
    if not dpop_scheme:
        _log(method, _resolved(url), _resolved(client_address))("bearer")
        raise _proof_refusal(DPoPRequired(), proof_refused=False)
    return str(jkt)


def _check_proof(
    jkt: str,
    raw_token: bytes,
    dpop_header: str | None,
    method: str,
    url: str,
    client_address: str | None,
    *,
    check_replay: bool,
) -> Proof:
    log = _log(method, url, client_address)
    try:
        proof = verify_dpop_header(
            dpop_header,
            method=method,
            url=url,
            access_token=raw_token.decode("ascii", "replace"),
            log=log,
            check_replay=check_replay,
        )
    except ReplayStoreUnavailable:
        raise _service_unavailable() from None
    if not isinstance(proof, Proof) or not hmac.compare_digest(proof.jkt, jkt):
        # No proof, a refused one (verify_dpop_header logged why), or another key's.
        if proof is None:
            log("missing")
        elif isinstance(proof, Proof):
            log("jkt")
        raise _proof_refusal(DPoPInvalid(), proof_refused=True)
    return proof


def _replay_checked_user(
    token: Token, proof: Proof | None, *, method: str, url: Any, client_address: Any
) -> AbstractBaseUser:
    """The async path's database hop: the proof's ``jti`` recorded, then the user."""
    if proof is not None:
        try:
            new = services.proof_is_new(proof)
        except ReplayStoreUnavailable:
            raise _service_unavailable() from None
        if not new:
            _log(method, _resolved(url), _resolved(client_address))("replay")
            raise _proof_refusal(DPoPInvalid(), proof_refused=True)
    return user_of(token)


def _proof_refusal(error: DPoPError, *, proof_refused: bool) -> AccessRefused:
    challenge = dpop.www_authenticate(
        app_settings.DPOP_ALGORITHMS,
        error="invalid_dpop_proof" if proof_refused else None,
    )
    return AccessRefused(str(error.message), error.code, challenge=challenge)


def _service_unavailable() -> AccessRefused:
    error = ServiceUnavailable()
    return AccessRefused(
        str(error.detail),
        str(error.default_code),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        cause=error,
    )


def _log(method: str, url: str, client_address: str | None) -> Callable[[str], None]:
    # The path as Django's request.path has it (decoded), never the query.
    path = unquote(urlsplit(url).path)

    def log(reason: str) -> None:
        log_refused(reason, method=method, path=path, address=client_address)

    return log
