"""The URLs of a djangorestframework-simplejwt project, answered by this app, so that
clients keep calling the ones they know while the project migrates::

    urlpatterns = [
        path("api/token/", include("rotating_tokens.simplejwt_urls")),  # simplejwt's URLs
        path("api/auth/", include("rotating_tokens.urls")),  # the rest: logout/, sessions/…
    ]

``api/token/`` logs in (``token/``), ``api/token/refresh/`` refreshes (and converts a
simplejwt refresh token, once) and ``api/token/blacklist/`` logs out, answering 200
``{}`` as simplejwt did. Mounted at the prefix the project gave simplejwt's views.
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "rotating_tokens_simplejwt"

urlpatterns = [
    path("", views.ObtainTokenView.as_view(), name="obtain"),
    path("refresh/", views.RefreshTokenView.as_view(), name="refresh"),
    path("blacklist/", views.SimpleJWTBlacklistView.as_view(), name="blacklist"),
]
