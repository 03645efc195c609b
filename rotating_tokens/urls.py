from __future__ import annotations

from django.urls import path

from . import views

app_name = "rotating_tokens"

urlpatterns = [
    path("token/", views.ObtainTokenView.as_view(), name="obtain"),
    path("token/refresh/", views.RefreshTokenView.as_view(), name="refresh"),
    path("token/session/", views.SessionTokenView.as_view(), name="session-exchange"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("logout/all/", views.LogoutAllView.as_view(), name="logout-all"),
    path("sessions/", views.SessionListView.as_view(), name="sessions"),
    path("jwks/", views.JWKSView.as_view(), name="jwks"),
    # Any string, not <uuid:>: a malformed id gets the view's JSON 404 (after the
    # access token is checked), not Django's HTML one.
    path("sessions/<str:family_id>/", views.SessionView.as_view(), name="session"),
]
