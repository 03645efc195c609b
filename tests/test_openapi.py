"""The OpenAPI schema (drf-spectacular): every endpoint, every documented error code."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.urls import reverse
from drf_spectacular.validation import validate_schema

from rotating_tokens import exceptions
from rotating_tokens.urls import urlpatterns

from .openapi_schema import documented_codes, openapi_schema

pytestmark = pytest.mark.django_db

OBTAIN, REFRESH, LOGOUT = "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"
LOGOUT_ALL, SESSIONS = "/api/auth/logout/all/", "/api/auth/sessions/"
SESSION = "/api/auth/sessions/{family_id}/"


def test_schema_is_valid_openapi():
    validate_schema(openapi_schema())


def test_every_endpoint_of_the_app_is_described():
    paths = openapi_schema()["paths"]
    for pattern in urlpatterns:
        path = "/api/auth/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        assert path in paths, path
        for operation in paths[path].values():
            assert operation["summary"] and operation["responses"]


def test_refresh_documents_every_refusal_code():
    codes = {cls.code for cls in exceptions.TokenError.__subclasses__()} | {"token_missing"}
    assert set(documented_codes(REFRESH, "post", 401)) == codes


@pytest.mark.parametrize(
    ("path", "method", "status", "code"),
    [
        (OBTAIN, "post", 401, "invalid_credentials"),
        (OBTAIN, "post", 400, "invalid"),
        (OBTAIN, "post", 400, "parse_error"),
        (OBTAIN, "post", 429, "throttled"),
        (REFRESH, "post", 403, "csrf_failed"),
        (REFRESH, "post", 413, "request_too_large"),
        (REFRESH, "post", 415, "unsupported_media_type"),
        (REFRESH, "post", 503, "service_unavailable"),
        (LOGOUT_ALL, "post", 401, "token_revoked"),
        (LOGOUT_ALL, "post", 401, "not_authenticated"),
        (SESSIONS, "get", 401, "token_not_valid"),
        (SESSION, "delete", 404, "not_found"),
        (SESSION, "get", 404, "not_found"),
        (SESSION, "get", 401, "token_revoked"),
    ],
)
def test_error_codes_are_documented(path, method, status, code):
    assert code in documented_codes(path, method, status)


def test_logout_is_always_204_and_public():
    operation = openapi_schema()["paths"][LOGOUT]["post"]
    assert "204" in operation["responses"] and "401" not in operation["responses"]
    assert operation.get("security") in (None, [])


def test_authenticated_endpoints_ask_for_a_bearer_jwt():
    schema = openapi_schema()
    scheme = schema["components"]["securitySchemes"]["jwtAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path, method in [(LOGOUT_ALL, "post"), (SESSIONS, "get"), (SESSION, "delete")]:
        assert schema["paths"][path][method]["security"] == [{"jwtAuth": []}]
    for path in (OBTAIN, REFRESH):
        assert "jwtAuth" not in str(schema["paths"][path]["post"].get("security"))


def test_obtain_body_names_the_username_field_and_refuses_blanks():
    body = openapi_schema()["components"]["schemas"]["Obtain"]
    assert set(body["required"]) == {"username", "password"}
    assert all(
        field["minLength"] == 1
        for name, field in body["properties"].items()
        if name in ("username", "password")
    )
    assert body["properties"]["remember"] == {
        "type": "boolean",
        "default": True,
        "description": body["properties"]["remember"]["description"],
    }


def test_session_exchange_documents_remember():
    operation = openapi_schema()["paths"]["/api/auth/token/session/"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = openapi_schema()["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["properties"]["remember"]["type"] == "boolean"
    assert "invalid" in documented_codes("/api/auth/token/session/", "post", 400)


def test_token_pair_and_sessions_document_the_new_fields():
    schemas = openapi_schema()["components"]["schemas"]
    assert schemas["TokenPair"]["properties"]["remember"]["type"] == "boolean"
    session = schemas["Session"]["properties"]
    assert {"device", "name", "remember"} <= set(session)


def test_renaming_a_session_is_documented():
    operation = openapi_schema()["paths"][SESSION]["patch"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = openapi_schema()["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["name"]
    assert (name["type"], name["minLength"], name["maxLength"]) == ("string", 1, 64)
    assert operation["security"] == [{"jwtAuth": []}]
    for status, code in ((400, "invalid"), (404, "not_found"), (401, "token_revoked")):
        assert code in documented_codes(SESSION, "patch", status)


def test_example_project_serves_the_schema(client, settings):
    settings.ROOT_URLCONF = "example_project.urls"
    response = client.get(reverse("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/auth/token/refresh/" in response.json()["paths"]


def test_app_works_without_drf_spectacular():
    # A fresh interpreter in which drf_spectacular cannot be imported.
    code = (
        "import sys; sys.modules['drf_spectacular'] = None\n"
        "import django; from django.conf import settings\n"
        "django.setup()\n"
        "from rotating_tokens import urls, views\n"
        "assert 'rotating_tokens.openapi' not in sys.modules\n"
    )
    result = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code],
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_example_project_answers_unknown_api_urls_in_the_documented_shape(client, settings):
    settings.ROOT_URLCONF = "example_project.urls"
    response = client.delete("/api/auth/no-such-endpoint/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize("path", [REFRESH, LOGOUT])
def test_refresh_and_logout_document_the_refresh_cookie(path):
    from rotating_tokens.conf import app_settings

    parameters = openapi_schema()["paths"][path]["post"]["parameters"]
    assert {"in": "cookie", "name": app_settings.REFRESH_COOKIE_NAME} in [
        {"in": p["in"], "name": p["name"]} for p in parameters
    ]
