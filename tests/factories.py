from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from rotating_tokens import crypto
from rotating_tokens.conf import app_settings
from rotating_tokens.models import RefreshToken, TokenFamily

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(PASSWORD)
    is_active = True


class TokenFamilyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TokenFamily

    user = factory.SubFactory(UserFactory)
    created_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda family: family.created_at + timedelta(days=30))
    ip_address = "192.0.2.1"
    user_agent = "factory-agent/1.0"


class RefreshTokenFactory(factory.django.DjangoModelFactory):
    """A stored token; the factory puts its raw value on ``token.raw``."""

    class Meta:
        model = RefreshToken

    family = factory.SubFactory(TokenFamilyFactory)
    lookup_key = factory.LazyFunction(lambda: secrets.token_urlsafe(12))
    secret = factory.LazyFunction(lambda: secrets.token_urlsafe(32))
    secret_hash = factory.LazyAttribute(lambda token: crypto.hash_secret(token.secret))
    issued_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda token: token.issued_at + timedelta(days=14))
    ip_address = "192.0.2.1"
    user_agent = "factory-agent/1.0"

    @classmethod
    def _create(cls, model_class: type[RefreshToken], *args: Any, **kwargs: Any) -> RefreshToken:
        secret = kwargs.pop("secret")
        token = super()._create(model_class, *args, **kwargs)
        token.raw = f"{app_settings.TOKEN_PREFIX}{token.lookup_key}{secret}"
        return token
