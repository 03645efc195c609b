"""The request bodies the token endpoints accept: JSON and form-urlencoded only.

No multipart parser: a login, refresh or logout has no file to upload, so a multipart
body is refused with 415 before anything reads it.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError

# A token endpoint's body is one flat object; anything nested deeper is not one.
MAX_JSON_DEPTH = 16


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with deeply nested input refused as malformed.

    ``json`` recurses once per nesting level: on Python 3.11,
    ``"[" * 1000 + "]" * 1000`` (2 KB) raises RecursionError, which DRF does not
    catch (a 500); Python 3.12 parses it, and fails only thousands of levels deeper.
    Here both are a 400 ``parse_error``, whatever the Python: more than
    ``MAX_JSON_DEPTH`` levels is refused as any body the endpoint cannot read.
    """

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            data = super().parse(*args, **kwargs)
        except RecursionError:
            raise ParseError(_("JSON parse error - the body is nested too deeply.")) from None
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(_("JSON parse error - the body is nested too deeply."))
        return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists or objects more than ``limit`` deep (iteratively:
    no recursion on what the client sent)."""
    level = [data]
    for _depth in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, (list, dict))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


TOKEN_ENDPOINT_PARSERS = (JSONParser, parsers.FormParser)
