"""A project's own login views, as "Issue tokens from your own views" (docs/howto/own-views.md)
shows: one DRF view, one plain Django view. The "authentication" here (a username in
the body) stands for whatever the project does: a social login, an MFA step."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rotating_tokens.exceptions import DPoPRefused
from rotating_tokens.views import issue_tokens, refusal_response, token_response


class DrfLoginView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    def post(self, request: Request) -> Response | HttpResponse:
        user = get_user_model().objects.get(username=request.data["username"])
        remember = request.data.get("remember", True) is not False
        return token_response(request, issue_tokens(request, user, remember=remember))


@csrf_exempt
@require_POST
def plain_login_view(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    user = get_user_model().objects.get(username=body["username"])
    try:
        remember = body.get("remember", True) is not False
        return token_response(request, issue_tokens(request, user, remember=remember))
    except DPoPRefused as refused:  # a plain view answers DRF's exceptions itself
        return refusal_response(refused)


class RefusingView(APIView):
    """An API view of the project that authenticates, then refuses the request (400):
    under ATOMIC_REQUESTS DRF rolls the request's transaction back."""

    def post(self, request: Request) -> Response:
        from rest_framework.exceptions import ValidationError

        raise ValidationError({"amount": ["Not enough money."]})
