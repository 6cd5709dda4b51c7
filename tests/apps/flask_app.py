"""A Flask app as a user writes it: no otel_posthog import, no instrumentor call.

Run with ``opentelemetry-instrument gunicorn tests.apps.flask_app:app`` and the ``posthog``
distro. ``/own-id`` sets its own ``X-Request-ID`` in an ``after_request`` hook.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask(__name__)
APP_REQUEST_ID = "flask-own-request-id-0001"


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.get("/users/<int:user_id>")
def user(user_id: int):
    return jsonify(user_id=user_id)


@app.get("/internal/<name>")
def internal(name: str):
    return jsonify(name=name)


@app.get("/own-id")
def own_id():
    return jsonify(ok=True)


@app.get("/boom")
def boom():
    raise RuntimeError("boom from flask")


@app.after_request
def set_own_request_id(response):
    if request.path == "/own-id":
        response.headers["X-Request-ID"] = APP_REQUEST_ID
    return response
