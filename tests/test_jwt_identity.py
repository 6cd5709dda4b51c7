"""JwtVerifier with real pyjwt tokens and keys: the trust rules one by one."""

from __future__ import annotations

import logging
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otel_posthog.core.settings import resolve_settings
from otel_posthog.sdk.jwt_identity import JwtVerifier

SECRET = "a-long-enough-hmac-secret-for-hs256-hs384-and-hs512-tokens-0123456789"


def claims(**extra):
    now = int(time.time())
    base = {"sub": "u1", "iat": now, "exp": now + 600}
    base.update(extra)
    return base


def verifier(**settings) -> JwtVerifier:
    return JwtVerifier(resolve_settings(env={}, **settings))


def test_secret_issuer_audience_and_claim():
    v = verifier(jwt_secret=SECRET, jwt_issuer="https://auth.example", jwt_audience="api")
    good = jwt.encode(claims(iss="https://auth.example", aud="api"), SECRET, "HS256")
    assert v.resolve(good).distinct_id == "u1"
    wrong_iss = jwt.encode(claims(iss="https://evil", aud="api"), SECRET, "HS256")
    assert v.resolve(wrong_iss).distinct_id is None
    no_aud = jwt.encode(claims(iss="https://auth.example"), SECRET, "HS256")
    assert v.resolve(no_aud).distinct_id is None
    custom = verifier(jwt_secret=SECRET, jwt_distinct_id_claim="user_id")
    token = jwt.encode(claims(user_id=42), SECRET, "HS256")
    assert custom.resolve(token).distinct_id == "42"
    numeric_sub = jwt.encode(claims(sub=1234), SECRET, "HS256")
    assert verifier(jwt_secret=SECRET).resolve(numeric_sub).distinct_id == "1234"
    nested = jwt.encode(claims(user_id={"deep": [1, 2]}), SECRET, "HS256")
    assert custom.resolve(nested).distinct_id is None


def test_token_with_audience_is_accepted_when_no_audience_is_required():
    v = verifier(jwt_secret=SECRET)
    assert v.resolve(jwt.encode(claims(aud="authenticated"), SECRET, "HS256")).distinct_id == "u1"


def test_algorithm_allow_list():
    v = verifier(jwt_secret=SECRET, jwt_algorithms="HS512")
    assert v.resolve(jwt.encode(claims(), SECRET, "HS256")).distinct_id is None
    assert v.resolve(jwt.encode(claims(), SECRET, "HS512")).distinct_id == "u1"


def test_pem_public_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    v = verifier(jwt_public_key=pem.decode())
    assert v.resolve(jwt.encode(claims(), key, "ES256")).distinct_id == "u1"
    other = ec.generate_private_key(ec.SECP256R1())
    assert v.resolve(jwt.encode(claims(), other, "ES256")).distinct_id is None
    # an HMAC token is never checked against a public key
    assert v.resolve(jwt.encode(claims(), SECRET, "HS256")).distinct_id is None


def test_unverified_mode_warns_and_decodes(caplog):
    with caplog.at_level(logging.WARNING, logger="otel_posthog"):
        v = verifier(jwt_verify=False)
    assert "WITHOUT" in caplog.text
    assert (
        v.resolve(jwt.encode(claims(), "whatever-secret-0123456789abcdef", "HS256")).distinct_id
        == "u1"
    )
    expired = jwt.encode(claims(exp=int(time.time()) - 100), "x" * 32, "HS256")
    assert v.resolve(expired).distinct_id is None


def test_no_key_configured_trusts_nothing():
    assert verifier().resolve(jwt.encode(claims(), SECRET, "HS256")).distinct_id is None


def test_results_are_cached_and_expiry_still_applies():
    v = verifier(jwt_secret=SECRET)
    token = jwt.encode(claims(exp=int(time.time()) + 1), SECRET, "HS256")
    assert v.resolve(token).distinct_id == "u1"
    assert v.resolve(token).distinct_id == "u1"  # cache hit
    time.sleep(7)  # past exp + leeway
    assert v.resolve(token).distinct_id is None
