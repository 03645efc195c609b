from django.urls import include, path

urlpatterns = [path("accounts/v2/", include("rotating_tokens.urls"))]
