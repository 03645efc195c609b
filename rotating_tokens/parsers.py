"""The request bodies the token endpoints accept: JSON and form-urlencoded only.

No multipart parser: a login, refresh or logout has no file to upload, so a multipart
body is refused with 415 before anything reads it.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with deeply nested input refused as malformed.

    ``json`` recurses once per nesting level, so ``"[" * 1000 + "]" * 1000`` (2 KB)
    raises RecursionError, which DRF does not catch: a 500. Here it is a 400
    ``parse_error`` like any other body the endpoint cannot read.
    """

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().parse(*args, **kwargs)
        except RecursionError:
            raise ParseError(_("JSON parse error - the body is nested too deeply.")) from None


TOKEN_ENDPOINT_PARSERS = (JSONParser, parsers.FormParser)
