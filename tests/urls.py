from django.contrib import admin
from django.urls import include, path

from example_project.demo.views import MeView

from .own_views import DrfLoginView, RefusingView, plain_login_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("rotating_tokens.urls")),
    path("api/me/", MeView.as_view(), name="me"),
    path("own/drf-login/", DrfLoginView.as_view(), name="own-drf-login"),
    path("own/plain-login/", plain_login_view, name="own-plain-login"),
    path("own/refusing/", RefusingView.as_view(), name="own-refusing"),
]
