"""Request budgets per API key."""

from __future__ import annotations

from rest_framework import throttling

from swarmsite.authentication import get_principal


class PrincipalRateThrottle(throttling.SimpleRateThrottle):
    """A fixed-window request budget per API key (or staff user).

    A counter per window keeps each check O(1), unlike the timestamp list of
    DRF's default throttles.
    """

    scope = "principal"

    def get_cache_key(self, request, view) -> str | None:
        principal = get_principal(request)
        if principal is None:
            return None
        ident = (
            f"key:{principal.key.pk}"
            if principal.key is not None
            else f"user:{principal.user.pk}"
        )
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        bucket = f"{key}:{window}"
        self.cache.add(bucket, 0, timeout=self.duration + 1)
        try:
            count = self.cache.incr(bucket)
        except ValueError:
            # Evicted between add and incr: count this request alone.
            self.cache.set(bucket, 1, timeout=self.duration + 1)
            count = 1
        self._wait = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
