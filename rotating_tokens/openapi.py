"""OpenAPI description of the app's endpoints, for drf-spectacular.

The app does not need drf-spectacular: ``AppConfig.ready()`` imports this module only
when it is installed, and defining the extension classes is what registers them.
Every documented error has the body ``{"detail", "code"}`` with the codes listed per
endpoint, so a client generated from the schema knows every ``code`` it can meet.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiViewExtension,
)
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework.views import APIView

from .models import NAME_MAX_LENGTH
from .serializers import (
    ObtainSerializer,
    RefreshSerializer,
    SessionExchangeSerializer,
    SessionNameSerializer,
    SessionSerializer,
    TokenPairSerializer,
)

TAG = "auth"

# Codes simplejwt and DRF give a refused access token, plus ours for a revoked family.
ACCESS_TOKEN_CODES = (
    "not_authenticated",
    "authentication_failed",
    "bad_authorization_header",
    "token_not_valid",
    "user_not_found",
    "user_inactive",
    "password_changed",
    "dpop_required",
    "dpop_invalid",
    "token_invalid",
    "token_revoked",
)
DPOP_CODES = ("dpop_required", "dpop_invalid")
REFRESH_CODES = ("token_missing", "token_invalid", "token_revoked", "token_expired", "token_reused")


def error_schema(*codes: str, field_errors: bool = False) -> dict[str, Any]:
    """The body of an error: a sentence for humans and one of ``codes`` for programs.

    Validation errors (``field_errors``) carry the list of messages of each field beside.
    """
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "detail": {"type": "string", "description": "A sentence for humans."},
            "code": {"type": "string", "enum": list(codes), "description": "For programs."},
        },
        "required": ["detail", "code"],
    }
    if field_errors:
        schema["additionalProperties"] = {"type": "array", "items": {"type": "string"}}
    else:
        schema["additionalProperties"] = False
    return schema


def error(description: str, *codes: str, field_errors: bool = False) -> OpenApiResponse:
    return OpenApiResponse(
        response=error_schema(*codes, field_errors=field_errors), description=description
    )


# Answers every endpoint of the app can give, whatever its purpose.
COMMON_ERRORS = {
    400: error("The body is not valid JSON or form data.", "parse_error"),
    413: error("The body is too large, or has too many fields.", "request_too_large"),
    415: error("The content type is not JSON or form data.", "unsupported_media_type"),
    503: error(
        "The database failed; nothing was changed. Retry after `Retry-After` seconds.",
        "service_unavailable",
    ),
}
THROTTLED = {429: error("Too many requests from this address.", "throttled")}
# RefreshTokenCookieMiddleware checks CSRF before a request may use the refresh cookie
# (and before a login from another site's page).
CSRF_FAILED = {
    403: error(
        "The request used the refresh cookie without passing Django's CSRF check.", "csrf_failed"
    )
}
ACCESS_TOKEN_REFUSED = {
    401: error("The access token is missing, invalid, expired or revoked.", *ACCESS_TOKEN_CODES)
}
TOKEN_PAIR = OpenApiResponse(
    response=TokenPairSerializer,
    description="A new access token and refresh token (with `Cache-Control: no-store`).",
)


def refresh_cookie() -> OpenApiParameter:
    """The refresh cookie, which refresh and logout read when the body has no token
    (``RefreshTokenCookieMiddleware``); its name depends on the settings."""
    from .conf import app_settings

    return OpenApiParameter(
        app_settings.REFRESH_COOKIE_NAME,
        OpenApiTypes.STR,
        OpenApiParameter.COOKIE,
        description="The refresh token, for browsers (HttpOnly). Using it needs Django's "
        "CSRF token in `X-CSRFToken`. A token in the body takes precedence.",
    )


DPOP_HEADER = OpenApiParameter(
    "DPoP",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="A DPoP proof (RFC 9449) for this request. At login it binds the new "
    "family to its key; a bound family's refresh and logout need one by that key.",
)


def described(view: type[APIView], **methods: Any) -> type[APIView]:
    """A subclass of ``view`` carrying the schema, so the view itself stays untouched."""
    subclass = type(view.__name__, (view,), {"__module__": view.__module__})
    return extend_schema_view(**methods)(subclass)


class ObtainSerializerSchema(OpenApiSerializerExtension):
    """Say what DRF's CharFields refuse, so that a request valid by the schema is
    never a 400: blank values, a username that is only whitespace (it is trimmed),
    and NUL characters."""

    target_class = "rotating_tokens.serializers.ObtainSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        for name, field in schema["properties"].items():
            if field.get("type") != "string":
                continue  # remember
            field["minLength"] = 1
            if name == "password":
                field["pattern"] = r"^[^\u0000]*$"
            else:
                field["pattern"] = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
        return schema


class SessionNameSerializerSchema(OpenApiSerializerExtension):
    """A name that is only whitespace is trimmed to nothing and refused; so are NULs."""

    target_class = "rotating_tokens.serializers.SessionNameSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        schema["properties"]["name"]["minLength"] = 1
        schema["properties"]["name"]["pattern"] = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
        return schema


class TokenPairSerializerSchema(OpenApiSerializerExtension):
    """With the refresh cookie (``RefreshTokenCookieMiddleware``), a browser's refresh
    token travels in the HttpOnly cookie only, and the body has no ``refresh``."""

    target_class = "rotating_tokens.serializers.TokenPairSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        schema["required"] = [name for name in schema["required"] if name != "refresh"]
        schema["properties"]["refresh"]["description"] = (
            "The new refresh token; absent when it travels in the refresh cookie only."
        )
        schema["properties"]["token_type"] = {
            "type": "string",
            "enum": ["Bearer", "DPoP"],
            "description": "`DPoP` when the family is bound to the key of the login's DPoP "
            "proof (RFC 9449): send the access token as `Authorization: DPoP …` with a proof.",
        }
        schema["properties"]["remember"]["description"] = (
            'false when the login said `"remember": false`: the refresh cookie is a '
            "session cookie (no `Max-Age`, no `Expires`), on every refresh too."
        )
        return schema


class SessionSerializerSchema(OpenApiSerializerExtension):
    """A session's address is null when the server saw none (no ``REMOTE_ADDR``)."""

    target_class = "rotating_tokens.serializers.SessionSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        schema["properties"]["ip_address"]["nullable"] = True
        schema["properties"]["device"] = {
            "type": "string",
            "description": "The device, as its last user agent describes it, for people: "
            '"Chrome 131 on Linux", "Safari 17 on iPhone", or "Unknown device".',
        }
        schema["properties"]["name"]["description"] = (
            'The name its owner gave the session (`PATCH`), or "". Plain text: escape it.'
        )
        schema["properties"]["remember"]["description"] = (
            'false for a login that said `"remember": false` (ends with the browser).'
        )
        schema["properties"]["dpop_jkt"] = {
            "type": "string",
            "nullable": True,
            "description": "The RFC 7638 thumbprint of the DPoP key the session is bound to.",
        }
        return schema


class ObtainTokenViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.ObtainTokenView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            post=extend_schema(
                operation_id="token_obtain",
                summary="Log in",
                description="Start a token family with the user's `USERNAME_FIELD` and "
                "password. Wrong password, unknown user and inactive user get the same 401.",
                tags=[TAG],
                request=ObtainSerializer,
                parameters=[DPOP_HEADER],
                responses={
                    200: TOKEN_PAIR,
                    **COMMON_ERRORS,
                    400: error(
                        "Missing or invalid fields (field errors beside `detail` and `code`), "
                        "a body that does not parse, a `DPoP` proof that is refused, or none "
                        "when `DPOP` is required.",
                        "invalid",
                        "parse_error",
                        *DPOP_CODES,
                        field_errors=True,
                    ),
                    401: error(
                        "The credentials are not those of an active user.", "invalid_credentials"
                    ),
                    403: error(
                        "Another site's page sent the login without passing Django's CSRF "
                        "check, or the project's `CHECK_LOGIN` refused the user (with a code "
                        "of its own, `login_refused` by default).",
                        "csrf_failed",
                        "login_refused",
                    ),
                    **THROTTLED,
                },
                auth=[],
            ),
        )


class SessionTokenViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.SessionTokenView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            post=extend_schema(
                operation_id="token_from_session",
                summary="Exchange a Django session for tokens",
                description="Start a token family for the user of the authenticated Django "
                "session (the login page, the admin, django-allauth), with Django's CSRF "
                "token in `X-CSRFToken`. The session is then logged out, unless "
                "`SESSION_EXCHANGE_ENDS_SESSION` is off.",
                tags=[TAG],
                request=SessionExchangeSerializer,
                responses={
                    200: TOKEN_PAIR,
                    **COMMON_ERRORS,
                    400: error(
                        "`remember` is not a boolean, or the body does not parse.",
                        "invalid",
                        "parse_error",
                        field_errors=True,
                    ),
                    401: error("No authenticated session.", "not_authenticated"),
                    403: error("Django's CSRF check failed.", "csrf_failed"),
                },
                auth=[],
            ),
        )


class RefreshTokenViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.RefreshTokenView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            post=extend_schema(
                operation_id="token_refresh",
                summary="Rotate a refresh token",
                description="Exchange a refresh token for a new pair. The token presented "
                "is used up; presenting it again (outside the grace period for retries) "
                "revokes the whole family: `token_reused`.",
                tags=[TAG],
                request=RefreshSerializer,
                parameters=[refresh_cookie(), DPOP_HEADER],
                responses={
                    200: TOKEN_PAIR,
                    **COMMON_ERRORS,
                    400: error(
                        "The body does not parse, or the family is bound to a DPoP key and "
                        "the request has no valid proof by it (nothing changed).",
                        "parse_error",
                        *DPOP_CODES,
                    ),
                    401: error("The refresh token was refused.", *REFRESH_CODES),
                    **CSRF_FAILED,
                    **THROTTLED,
                },
                auth=[],
            ),
        )


class LogoutViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.LogoutView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            post=extend_schema(
                operation_id="logout",
                summary="Log out",
                description="Revoke the family of a refresh token. 204 also for an unknown, "
                "malformed or already revoked token, so the answer tells nothing.",
                tags=[TAG],
                request=RefreshSerializer,
                parameters=[refresh_cookie(), DPOP_HEADER],
                responses={
                    204: OpenApiResponse(description="Done."),
                    **COMMON_ERRORS,
                    **CSRF_FAILED,
                    **THROTTLED,
                },
                auth=[],
            ),
        )


class SimpleJWTBlacklistViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.SimpleJWTBlacklistView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            post=extend_schema(
                operation_id="simplejwt_blacklist",
                summary="Log out (simplejwt's blacklist URL)",
                description="As logout, answered as djangorestframework-simplejwt's "
                "TokenBlacklistView answered: 200 {} for any token, so the answer tells "
                "nothing. A simplejwt refresh token is spent during the transition.",
                tags=[TAG],
                request=RefreshSerializer,
                parameters=[refresh_cookie(), DPOP_HEADER],
                responses={
                    200: OpenApiResponse(
                        response={"type": "object", "additionalProperties": False},
                        description="Done.",
                    ),
                    **COMMON_ERRORS,
                    **CSRF_FAILED,
                    **THROTTLED,
                },
                auth=[],
            ),
        )


class LogoutAllViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.LogoutAllView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            post=extend_schema(
                operation_id="logout_all",
                summary="Log out everywhere",
                description="Revoke every family of the user the access token belongs to.",
                tags=[TAG],
                request=None,
                responses={
                    204: OpenApiResponse(description="Every family of the user is revoked."),
                    **ACCESS_TOKEN_REFUSED,
                    503: COMMON_ERRORS[503],
                },
            ),
        )


class SessionListViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.SessionListView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            get=extend_schema(
                operation_id="sessions_list",
                summary="List the user's sessions",
                description="The active families (devices) of the user the access token "
                "belongs to, newest first; `current` marks the one of this access token.",
                tags=[TAG],
                responses={
                    200: SessionSerializer(many=True),
                    **ACCESS_TOKEN_REFUSED,
                    503: COMMON_ERRORS[503],
                },
            ),
        )


class SessionViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.SessionView"

    def view_replacement(self) -> type[APIView]:
        family_id = OpenApiParameter(
            "family_id",
            OpenApiTypes.UUID,
            OpenApiParameter.PATH,
            description="The `id` of a session, as `GET sessions/` lists it.",
        )
        return described(
            self.target,
            get=extend_schema(
                operation_id="sessions_retrieve",
                summary="One session",
                description="One of the user's active sessions, as `GET sessions/` lists it. "
                "Another user's session, an ended one and an unknown id get the same 404.",
                tags=[TAG],
                parameters=[family_id],
                responses={
                    200: SessionSerializer,
                    **ACCESS_TOKEN_REFUSED,
                    404: error("The user has no active session with this id.", "not_found"),
                    503: COMMON_ERRORS[503],
                },
            ),
            patch=extend_schema(
                operation_id="sessions_rename",
                summary="Name one session",
                description=f"Give one of the user's active sessions a name (1 to "
                f"{NAME_MAX_LENGTH} characters once trimmed). Another user's session, an "
                "ended one and an unknown id get the same 404.",
                tags=[TAG],
                parameters=[family_id],
                request=SessionNameSerializer,
                responses={
                    200: OpenApiResponse(response=SessionSerializer, description="Renamed."),
                    **COMMON_ERRORS,
                    400: error(
                        "`name` is missing, not a string, empty once trimmed, or longer than "
                        f"{NAME_MAX_LENGTH} characters; or the body does not parse.",
                        "invalid",
                        "parse_error",
                        field_errors=True,
                    ),
                    **ACCESS_TOKEN_REFUSED,
                    404: error("The user has no active session with this id.", "not_found"),
                },
            ),
            delete=extend_schema(
                operation_id="sessions_revoke",
                summary="Sign one session out",
                description="Revoke one of the user's families. Another user's family "
                "and an unknown id get the same 404.",
                tags=[TAG],
                parameters=[family_id],
                responses={
                    204: OpenApiResponse(description="The session is signed out."),
                    **ACCESS_TOKEN_REFUSED,
                    404: error("The user has no session with this id.", "not_found"),
                    503: COMMON_ERRORS[503],
                },
            ),
        )


class AccessTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "rotating_tokens.authentication.AccessTokenAuthentication"
    name = "jwtAuth"
    match_subclasses = True
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        from rest_framework_simplejwt.settings import api_settings

        return build_bearer_security_scheme_object(
            header_name=api_settings.AUTH_HEADER_NAME,
            token_prefix=api_settings.AUTH_HEADER_TYPES[0],
            bearer_format="JWT",
        )


class JWKSViewSchema(OpenApiViewExtension):
    target_class = "rotating_tokens.views.JWKSView"

    def view_replacement(self) -> type[APIView]:
        return described(
            self.target,
            get=extend_schema(
                operation_id="jwks",
                summary="The verifying keys of access tokens (JWKS)",
                description="RFC 7517 JSON Web Key Set of the public keys access tokens are "
                "signed with (the current one first, then `VERIFYING_KEY_FALLBACKS`), each "
                "with its RFC 7638 thumbprint as `kid`, which access tokens carry in their "
                "header. 404 when the algorithm is symmetric.",
                tags=[TAG],
                responses={
                    200: OpenApiResponse(
                        response={
                            "type": "object",
                            "properties": {
                                "keys": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "kty": {"type": "string"},
                                            "kid": {"type": "string"},
                                            "alg": {"type": "string"},
                                            "use": {"type": "string"},
                                        },
                                        "required": ["kty", "kid", "alg", "use"],
                                    },
                                }
                            },
                            "required": ["keys"],
                        },
                        description="The key set (cacheable for 5 minutes).",
                    ),
                    404: error("Access tokens are signed with a symmetric key.", "not_found"),
                },
                auth=[],
            ),
        )
