from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from example_project.demo import pages
from example_project.demo.ninja_api import api as ninja_api
from example_project.demo.views import MeView, async_me, not_found
from rotating_tokens.views import JWKSView

# The API first: Django tries the patterns in order, and every request to an API path
# would otherwise test the demo's and the admin's first.
urlpatterns = [
    path("api/me/", MeView.as_view(), name="me"),
    # The same answer from an async Django view and from a Django Ninja API.
    path("api/async/me/", async_me, name="async-me"),
    path("api/ninja/", ninja_api.urls),
    path("api/auth/", include("rotating_tokens.urls")),
    # simplejwt's URLs, for clients of a project migrating from it
    # (docs/howto/migrate-from-simplejwt.md).
    path("api/token/", include("rotating_tokens.simplejwt_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Where other services look for the verifying keys by convention.
    path(".well-known/jwks.json", JWKSView.as_view(), name="jwks"),
    path("", pages.index, name="demo"),
    path("demo/<str:name>", pages.script, name="demo-script"),
    path("admin/", admin.site.urls),
]

handler404 = not_found
