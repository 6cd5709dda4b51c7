"""A slow or failing identity provider never stalls the bridge, and recovers.

Real loopback HTTP servers play the IdP: one trickles its JWKS a byte a second, one is
down and then comes back, one rotates its keys. The bridge runs in a real FastAPI app
under uvicorn (a subprocess for the SIGTERM test), posting to the local sink.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from otel_posthog.core.settings import resolve_settings
from otel_posthog.sdk.jwt_identity import JwksCache, JwtVerifier, fetch_json

from .bridge_fixtures import SUPABASE_SECRET, Bridge
from .helpers import AppProcess, bridge_env

KID = "key-1"


class _Key:
    def __init__(self, kid: str = KID) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
        self.jwk = jwk

    def token(self, sub: str, **claims: Any) -> str:
        body = {"sub": sub, "aud": "authenticated", "exp": int(time.time()) + 600, **claims}
        return jwt.encode(body, self.private, algorithm="RS256", headers={"kid": self.kid})


class Idp:
    """A JWKS endpoint on 127.0.0.1 whose behaviour a test switches.

    ``mode``: ``"ok"`` serves the keys, ``"down"`` answers 503, ``"trickle"`` sends the
    headers then the body one byte a second, ``"trickle-headers"`` sends even the status
    line one byte a second. Trickling ends when the test stops the server.
    """

    def __init__(self, keys: list[_Key], mode: str = "ok") -> None:
        self.keys = keys
        self.mode = mode
        self.stopping = threading.Event()
        self.hits = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                idp.hits += 1
                body = json.dumps({"keys": [k.jwk for k in idp.keys]}).encode()
                if idp.mode == "down":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if idp.mode == "trickle-headers":
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    self._trickle(head + body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if idp.mode == "trickle":
                    self._trickle(body)
                else:
                    self.wfile.write(body)

            def _trickle(self, data: bytes) -> None:
                try:
                    for i in range(len(data)):
                        if idp.stopping.wait(1.0):
                            return
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                except OSError:
                    return  # the client gave up: what the deadline is for

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key():
    return _Key()


@pytest.mark.parametrize("mode", ["trickle", "trickle-headers"])
def test_a_trickling_jwks_fetch_ends_at_its_total_deadline(key, mode):
    idp = Idp([key], mode)
    try:
        start = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - a timeout or a dropped connection
            fetch_json(idp.url, 1.0)
        # one byte a second would take minutes; the deadline is 1 s (generous bound)
        assert time.monotonic() - start < 6
    finally:
        idp.stop()


def test_the_fetcher_is_not_stuck_after_a_deadline_and_refreshes_later(key):
    idp = Idp([key], "trickle")
    try:
        cache = JwksCache(idp.url, timeout_s=1.0)
        cache.retry_failed_s = 0.2
        start = time.monotonic()
        cache.refresh_now()
        assert time.monotonic() - start < 6
        assert cache.key(KID) is None  # that fetch failed...
        idp.mode = "ok"
        deadline = time.monotonic() + 20
        while cache.key(KID) is None and time.monotonic() < deadline:
            cache.refresh_now()  # ...and a later one runs and succeeds
            time.sleep(0.05)
        assert cache.key(KID) is not None
    finally:
        idp.stop()


def _request_person(bridge: Bridge, token: str, chat: int) -> str:
    r = bridge.request("GET", f"/api/chat/{chat}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    events = bridge.events_for(rid, {"api_request"})
    assert events, "the event never arrived"
    return events[0].distinct_id


def test_a_jwks_outage_is_not_cached_the_same_token_is_trusted_after_recovery(sink, key):
    idp = Idp([key], "down")
    bridge = Bridge(sink, jwt_jwks_url=idp.url)
    try:
        jwks = bridge.processor.verifier.jwks
        assert jwks is not None
        jwks.retry_failed_s = 0.2  # retry a failed fetch quickly (default 10 s)
        token = key.token("user-outage")
        assert _request_person(bridge, token, 1) != "user-outage"  # IdP down: not trusted
        idp.mode = "ok"
        deadline = time.monotonic() + 30
        person = None
        while person != "user-outage" and time.monotonic() < deadline:
            person = _request_person(bridge, token, 2)  # the same token, after recovery
        assert person == "user-outage"
    finally:
        bridge.stop()
        idp.stop()


def test_a_key_rotation_race_is_retried_after_the_next_refresh(sink, key):
    """A token signed with a new key the cached JWKS lacks is trusted once keys refresh."""
    new_key = _Key("key-2")
    idp = Idp([key])
    bridge = Bridge(sink, jwt_jwks_url=idp.url)
    try:
        jwks = bridge.processor.verifier.jwks
        assert jwks is not None
        assert _request_person(bridge, key.token("user-old"), 1) == "user-old"
        jwks.min_refresh_s = 0.5  # refresh for unknown kids sooner (default 60 s)
        token = new_key.token("user-rotated")
        first = _request_person(bridge, token, 2)  # kid unknown, the IdP not rotated yet
        assert first != "user-rotated"
        idp.keys = [key, new_key]  # the IdP publishes the new key
        deadline = time.monotonic() + 30
        person = first
        while person != "user-rotated" and time.monotonic() < deadline:
            time.sleep(0.2)
            person = _request_person(bridge, token, 3)
        assert person == "user-rotated"
    finally:
        bridge.stop()
        idp.stop()


def test_a_numeric_string_exp_keeps_the_person_on_every_use(sink):
    """PyJWT accepts ``"exp": "<digits>"``; the cache must not break on its second use."""
    claims = {
        "sub": "user-strexp",
        "aud": "authenticated",
        "exp": str(int(time.time()) + 600),
    }
    token = jwt.encode(claims, SUPABASE_SECRET, algorithm="HS256")
    verifier = JwtVerifier(
        resolve_settings({}, jwt_secret=SUPABASE_SECRET, jwt_audience="authenticated")
    )
    assert verifier.resolve(token).distinct_id == "user-strexp"
    assert verifier.resolve(token).distinct_id == "user-strexp"  # raised here before
    bridge = Bridge(sink)
    try:
        for chat in (1, 2):
            assert _request_person(bridge, token, chat) == "user-strexp"
    finally:
        bridge.stop()


def test_a_trickling_idp_never_stalls_requests_delivery_or_shutdown(sink, tmp_path, key):
    """IdP trickling a byte a second, spool on and a tiny queue (overflow on the request
    thread): every request answers, /health answers, events arrive, SIGTERM is prompt."""
    idp = Idp([key], "trickle")
    env = bridge_env(
        sink,
        OTEL_POSTHOG_JWT_JWKS_URL=idp.url,
        OTEL_POSTHOG_SPOOL_DIR=str(tmp_path),
        OTEL_POSTHOG_MAX_QUEUE_SIZE="5",
        OTEL_POSTHOG_SHUTDOWN_TIMEOUT_MS="2000",
    )
    tokens = [key.token(f"user-{i}") for i in range(260)]  # distinct: none cached
    app = AppProcess(env)
    try:
        app.start()
        with requests.Session() as client:
            for i, token in enumerate(tokens):
                r = client.get(
                    f"{app.url}/api/chat/{i}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,  # the old code blocked the event loop for minutes here
                )
                assert r.status_code == 200
            assert client.get(f"{app.url}/health", timeout=10).status_code == 200
        assert idp.hits >= 1  # the IdP was really asked (and trickled)
        got = sink.wait_for(lambda evs: len(evs) >= len(tokens), 90, events=["api_request"])
        assert len(got) >= len(tokens), f"{len(got)} of {len(tokens)} events delivered"
        start = time.monotonic()
        app.signal(signal.SIGTERM)
        app.wait(60)
        # shutdown deadline 2 s; the old code took 50 s+ with the IdP trickling
        assert time.monotonic() - start < 20, app.output()[-2000:]
    finally:
        app.stop()
        idp.stop()
