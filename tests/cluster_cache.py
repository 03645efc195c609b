"""Django's RedisCache on a Redis Cluster, for the fault tests only.

Neither Django's RedisCache nor django-redis (up to 7.0) talks to a Cluster; a project
on one brings a backend like this. It is enough to show that the keys the app writes
(throttle counters, used DPoP proofs) each live in one slot: a command over keys in
several slots fails on a Cluster, and this backend passes such commands on unchanged.
"""

from __future__ import annotations

from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ClusterCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._cluster: redis.RedisCluster | None = None
        self._cluster_options = {
            key: options[key]
            for key in ("socket_timeout", "socket_connect_timeout")
            if key in options
        }

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        if self._cluster is None:
            self._cluster = redis.RedisCluster.from_url(self._servers[0], **self._cluster_options)
        return self._cluster


class ClusterRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ClusterCacheClient
