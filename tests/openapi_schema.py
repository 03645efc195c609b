"""The OpenAPI schema of the test URLs, and a check that a response matches it."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator


@lru_cache(maxsize=1)
def openapi_schema() -> dict[str, Any]:
    return SchemaGenerator(urlconf="tests.urls").get_schema(request=None, public=True)


def documented_codes(path: str, method: str, status: int) -> list[str]:
    """The ``code`` values the schema documents for one answer."""
    response = openapi_schema()["paths"][path][method]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]["properties"]["code"]["enum"]


def assert_documented(response: Any, path: str, method: str = "post") -> None:
    """The status is documented for the operation, and the body matches its schema."""
    schema = openapi_schema()
    responses = schema["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"undocumented {status} from {method} {path}: {response.content!r}"
    content = responses[status].get("content")
    if content is None:
        assert response.content == b""
        return
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body_schema = {**content["application/json"]["schema"], "components": schema["components"]}
    Draft202012Validator(body_schema).validate(json.loads(response.content))
