from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from example_project.demo import pages
from example_project.demo.views import MeView, not_found
from rotating_tokens.views import JWKSView

urlpatterns = [
    path("", pages.index, name="demo"),
    path("demo/<str:name>", pages.script, name="demo-script"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("rotating_tokens.urls")),
    # simplejwt's URLs, for clients of a project migrating from it
    # (docs/howto/migrate-from-simplejwt.md).
    path("api/token/", include("rotating_tokens.simplejwt_urls")),
    # Where other services look for the verifying keys by convention.
    path(".well-known/jwks.json", JWKSView.as_view(), name="jwks"),
    path("api/me/", MeView.as_view(), name="me"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]

handler404 = not_found
