from __future__ import annotations

import logging
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from .clients import client_address

logger = logging.getLogger("rotating_tokens")


class OptionalScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, except that:

    - it counts by the address ``clients.client_address`` finds, the one the rest of
      the app records (DRF's own rule trusts the whole X-Forwarded-For unless
      ``NUM_PROXIES`` is set, so a client could pick a fresh address per request);
    - a scope with no rate in ``DEFAULT_THROTTLE_RATES`` is not throttled (DRF would
      raise ImproperlyConfigured, turning every login into a 500);
    - a cache that is down lets requests through."""

    def get_ident(self, request: Request) -> str:
        return client_address(request) or "unknown"

    def get_rate(self) -> str | None:
        return self.THROTTLE_RATES.get(self.scope) if self.scope else None

    def allow_request(self, request: Request, view: Any) -> bool:
        # The throttle keeps its counts in the cache. If the cache is down, refusing
        # every login and refresh would log everyone out; letting them through
        # unthrottled for that time is the lesser harm (the password hasher still
        # slows guessing, and refresh tokens cannot be guessed).
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("Cache unavailable; request not throttled.", exc_info=True)
            return True
