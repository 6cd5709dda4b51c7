"""Routes written with ``path()``, ``re_path()`` and ``include()``; a middleware that sets
its own ``X-Request-ID`` on ``/own-id``."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import include, path, re_path

APP_REQUEST_ID = "django-own-request-id-0001"


def own_request_id(get_response):
    def middleware(request):
        response = get_response(request)
        if request.path == "/own-id":
            response["X-Request-ID"] = APP_REQUEST_ID
        return response

    return middleware


def health(request):
    return JsonResponse({"status": "ok"})


def user(request, user_id: int):
    return JsonResponse({"user_id": user_id})


def article(request, year: str):
    return JsonResponse({"year": year})


def item(request, pk: str):
    return JsonResponse({"pk": pk})


def own_id(request):
    return JsonResponse({"ok": True})


def boom(request):
    raise RuntimeError("boom from django")


urlpatterns = [
    path("health", health),
    path("users/<int:user_id>", user),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", article),
    path("api/", include([re_path(r"^items/(?P<pk>\d+)/$", item)])),
    path("own-id", own_id),
    path("boom", boom),
]
