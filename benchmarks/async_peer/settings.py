"""The example project, plus a view authenticated by simplejwt's JWTAuthentication
(benchmarks/async_read.py): the same server, settings and async view for both."""

from example_project.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.async_peer.urls"
