from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from . import devices
from .models import NAME_MAX_LENGTH


class RememberField(serializers.BooleanField):
    """``remember``: a JSON boolean. DRF's BooleanField also takes 1, "yes", "on"…;
    here anything but true or false is a 400, except that a form body, where every
    value is a string, may say "true" or "false"."""

    default_error_messages = {"invalid": _("Must be true or false.")}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        if isinstance(self.parent.initial_data, QueryDict) and data in ("true", "false"):
            return data == "true"
        self.fail("invalid")


def remember_field() -> RememberField:
    return RememberField(
        required=False,
        default=True,
        help_text="false: a session that ends when the browser closes (a session cookie), "
        "and on the server after `SESSION_FAMILY_LIFETIME`, or "
        "`SESSION_REFRESH_TOKEN_LIFETIME` without a refresh.",
    )


class ObtainSerializer(serializers.Serializer):
    """The user's USERNAME_FIELD and password."""

    password = serializers.CharField(
        trim_whitespace=False, max_length=4096, style={"input_type": "password"}
    )
    remember = remember_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[self.username_field] = serializers.CharField(max_length=254)

    @property
    def username_field(self) -> str:
        return get_user_model().USERNAME_FIELD


class SessionExchangeSerializer(serializers.Serializer):
    """The body of ``token/session/``: optional."""

    remember = remember_field()


class RefreshSerializer(serializers.Serializer):
    """The body of refresh and logout (the cookie can carry the token instead)."""

    refresh = serializers.CharField(required=False)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    token_type = serializers.CharField()  # "DPoP" for a family bound to a key, or "Bearer"
    access_expires_at = serializers.DateTimeField()
    refresh = serializers.CharField()
    refresh_expires_at = serializers.DateTimeField()
    # False: the refresh cookie is a session cookie (the login said "remember": false).
    remember = serializers.BooleanField()

    @classmethod
    def data_of(cls, pair: Any) -> dict[str, Any]:
        """``cls(pair).data``, the body of a token answer, each value as its field
        represents it. Without an instance: a serializer deep-copies its fields when
        it is made, and ``cls(pair).data`` took 60 us of every refresh, this 12 us
        (measured). The fields' representations read the settings
        (``DATETIME_FORMAT``, the time zone) on each call, as in a serializer."""
        data = {}
        # The declared fields are the class's own: representing a value changes nothing
        # in them. Each reads the attribute of its name (none has another source).
        for name, field in cls._declared_fields.items():
            value = getattr(pair, name)
            data[name] = None if value is None else field.to_representation(value)
        return data


class SessionSerializer(serializers.Serializer):
    """One of the user's active families, as ``GET sessions/`` lists them. Address and
    user agent are those of the last use; ``current`` needs ``current_family_id`` in
    the context."""

    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    ip_address = serializers.IPAddressField(source="last_ip_address")
    user_agent = serializers.CharField(source="last_user_agent")
    # What the user agent of the last use says, for people ("Chrome 131 on Linux").
    device = serializers.SerializerMethodField()
    # The name its owner gave it (PATCH sessions/<id>/), or "".
    name = serializers.CharField()
    remember = serializers.BooleanField()
    current = serializers.SerializerMethodField()
    # The thumbprint of the DPoP key the family is bound to (not secret), or null.
    dpop_jkt = serializers.SerializerMethodField()

    def get_device(self, family: Any) -> str:
        return devices.describe(getattr(family, "last_user_agent", None) or family.user_agent)

    def get_dpop_jkt(self, family: Any) -> str | None:
        return family.dpop_jkt or None

    def get_current(self, family: Any) -> bool:
        return str(family.pk) == str(self.context.get("current_family_id"))


class StrictCharField(serializers.CharField):
    """A CharField that takes a string only: DRF's turns a number into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SessionNameSerializer(serializers.Serializer):
    """The body of ``PATCH sessions/<id>/``: a name of 1 to 64 characters once the
    whitespace around it is trimmed. Stored as the text it is; whatever shows it
    escapes it (the admin, the demo page)."""

    name = StrictCharField(max_length=NAME_MAX_LENGTH, allow_blank=False, trim_whitespace=True)
