from django.contrib import admin
from django.urls import include, path

from example_project.demo.views import MeView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("rotating_tokens.urls")),
    path("api/me/", MeView.as_view(), name="me"),
]
