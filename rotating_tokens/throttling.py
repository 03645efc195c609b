from __future__ import annotations

from rest_framework.throttling import ScopedRateThrottle


class OptionalScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, except that a scope with no rate in
    ``DEFAULT_THROTTLE_RATES`` is not throttled (DRF would raise ImproperlyConfigured,
    turning every login into a 500)."""

    def get_rate(self) -> str | None:
        return self.THROTTLE_RATES.get(self.scope)
