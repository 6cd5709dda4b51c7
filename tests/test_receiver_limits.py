"""The receiver under attack: amplification bodies, deep values, busy decode slots, bad tokens.

The bodies are the ones that took the old receiver to gigabytes: ~60 KB of gzip that
inflates to 63 MB of ``[[],[],...]`` JSON or of millions of empty protobuf spans, built by
hand on the wire. They must be refused (413/400, never 500) and the receiver process's
memory, read from ``/proc/<pid>/status``, must stay bounded and come back.
"""

from __future__ import annotations

import gzip
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from otel_posthog.receiver import DecodeError, decode_json, decode_protobuf
from otel_posthog.receiver.limits import LimitExceeded, Limits

from .helpers import VENV_BIN, AppProcess
from .receiver_fixtures import Receiver, json_request, json_span, new_ids, server_attributes

JSON = {"Content-Type": "application/json"}
PROTO = {"Content-Type": "application/x-protobuf"}
GZIP_JSON = {**JSON, "Content-Encoding": "gzip"}
GZIP_PROTO = {**PROTO, "Content-Encoding": "gzip"}
DECODED = 63 * 1024 * 1024  # under the default 64 MB decompression cap


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def request_of(spans: bytes) -> bytes:
    """ExportTraceServiceRequest{resource_spans{scope_spans{<spans>}}} on the wire."""
    return field(1, field(2, spans))


def empty_spans(n: int) -> bytes:
    return request_of(b"\x12\x00" * n)  # ScopeSpans.spans (field 2), empty


def nested_value(depth: int) -> bytes:
    """A span with one attribute whose value is ``depth`` arrays deep."""
    value = field(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        value = field(5, field(1, value))  # AnyValue.array_value{values: [value]}
    key_value = field(1, b"k") + field(2, value)
    span = field(1, bytes(range(1, 17))) + field(2, bytes(range(1, 9))) + field(9, key_value)
    return request_of(field(2, span))


def json_nested_value(depth: int) -> dict:
    value: dict = {"stringValue": "x"}
    for _ in range(depth):
        value = {"arrayValue": {"values": [value]}}
    span = json_span(attributes=server_attributes())
    span["attributes"].append({"key": "deep", "value": value})
    return json_request([span])


# -- decoders: the counts on the wire ---------------------------------------------------------


def test_protobuf_counts_before_parsing():
    small = Limits(max_spans=10, max_items=1000, max_value_depth=3)
    assert decode_protobuf(empty_spans(10), small).rejected == 10  # empty ids: rejected spans
    with pytest.raises(LimitExceeded) as spans:
        decode_protobuf(empty_spans(11), small)
    assert spans.value.status == 413 and "spans" in str(spans.value)
    with pytest.raises(LimitExceeded) as items:
        decode_protobuf(field(1, b"\x0a\x00" * 2000), small)  # 2000 empty resources
    assert items.value.status == 413
    with pytest.raises(LimitExceeded) as unknown:
        decode_protobuf(b"\x78\x00" * 2000, small)  # unknown varint fields count too
    assert unknown.value.status == 413
    assert decode_protobuf(nested_value(3), small).views
    with pytest.raises(LimitExceeded) as deep:
        decode_protobuf(nested_value(4), small)
    assert deep.value.status == 400 and "nested" in str(deep.value)
    for broken in (b"\x0a\x05ab", b"\x0a", b"\x0b\x00", b"\x08\xff\xff"):
        with pytest.raises(DecodeError):
            decode_protobuf(broken, small)


def test_json_counts_values_outside_strings():
    small = Limits(max_spans=10, max_items=400, max_value_depth=3)
    body = json_request([json_span(attributes=server_attributes())])
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = ",[{" * 1000  # in a string
    assert len(decode_json(json.dumps(body).encode(), small).views) == 1
    escaped = json.dumps({"resourceSpans": [], "s": '\\"[' * 500 + '"'}).encode()
    assert decode_json(escaped, small).views == []
    with pytest.raises(LimitExceeded) as many:
        decode_json(b'{"resourceSpans": [' + b"[]," * 400 + b"[]]}", small)
    assert many.value.status == 413
    with pytest.raises(LimitExceeded) as spans:
        decode_json(json.dumps(json_request([{}] * 11)).encode(), small)
    assert spans.value.status == 413
    for not_object in (b"[[], []]", b" 5", b'"x"', b""):
        with pytest.raises(LimitExceeded) as top:
            decode_json(not_object, small)
        assert top.value.status == 400
    assert len(decode_json(json.dumps(json_nested_value(3)).encode(), small).views) == 1
    with pytest.raises(LimitExceeded) as deep:
        decode_json(json.dumps(json_nested_value(4)).encode(), small)
    assert deep.value.status == 400
    with pytest.raises(DecodeError):  # deeper than json's own recursion limit
        decode_json(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", small)
    with pytest.raises(DecodeError):  # an unterminated string full of escapes is no slow path
        decode_json(b'{"a": "' + b'\\"[,' * 2000, small)


# -- a real `otel-posthog receive` process, RSS from /proc --------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def amplification_bodies() -> dict[str, tuple[bytes, dict[str, str]]]:
    json_list = b"[" + b"[]," * (DECODED // 3) + b"[]]"
    json_object = b'{"resourceSpans": [' + b"[]," * (DECODED // 3) + b"[]]}"
    spans = empty_spans(DECODED // 2)
    attributes = request_of(field(2, b"\x4a\x00" * (DECODED // 2)))  # one span, empty attributes
    bodies = {
        "json list": (json_list, GZIP_JSON),
        "json object": (json_object, GZIP_JSON),
        "protobuf spans": (spans, GZIP_PROTO),
        "protobuf attributes": (attributes, GZIP_PROTO),
    }
    out = {}
    for name, (raw, headers) in bodies.items():
        assert len(raw) < 64 * 1024 * 1024
        compressed = gzip.compress(raw, compresslevel=9)
        assert len(compressed) < 100 * 1024, (name, len(compressed))
        out[name] = (compressed, headers)
    return out


@pytest.fixture(scope="module")
def bodies():
    return amplification_bodies()


def test_amplification_bodies_are_refused_and_memory_stays_bounded(sink, bodies):
    env = {"POSTHOG_API_KEY": sink.api_key, "POSTHOG_HOST": sink.url}
    argv = [str(VENV_BIN / "otel-posthog"), "receive", "--port", "{port}", "--log-level", "warning"]
    with AppProcess(env, argv=argv) as proc:
        assert proc.proc is not None
        url = proc.url + "/v1/traces"
        valid = json_request([json_span(attributes=server_attributes())])
        assert requests.post(url, json=valid, timeout=30).status_code == 200
        baseline = memory_kb(proc.proc.pid)["VmRSS"]

        for name, (body, headers) in bodies.items():
            response = requests.post(url, data=body, headers=headers, timeout=120)
            assert response.status_code in (400, 413), (name, response.status_code, response.text)
            assert "code" in response.text or response.content, name

        # the same, 12 at once: at most two are decoded at a time, the rest wait or get 429
        jobs = [b for b in bodies.values() for _ in range(3)]
        with ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(
                pool.map(
                    lambda job: requests.post(url, data=job[0], headers=job[1], timeout=120),
                    jobs,
                )
            )
        statuses = [r.status_code for r in answers]
        assert set(statuses) <= {400, 413, 429}, statuses
        for response in answers:
            if response.status_code == 429:
                assert response.headers["Retry-After"]

        memory = memory_kb(proc.proc.pid)
        # the old receiver peaked at gigabytes and kept most of it; now each decode holds
        # at most its inflated body (64 MB) and two run at once
        assert memory["VmHWM"] - baseline < 450 * 1024, (baseline, memory)
        assert memory["VmRSS"] - baseline < 200 * 1024, (baseline, memory)

        # and it still serves: a valid request after the attack gets its event
        trace_id, _ = new_ids()
        span = json_span(trace_id, attributes=server_attributes())
        again = gzip.compress(json.dumps(json_request([span])).encode())
        ok = requests.post(url, data=again, headers=GZIP_JSON, timeout=30)
        assert ok.status_code == 200, ok.text
    found = sink.wait_for(lambda evs: any(e.properties.get("$trace_id") == trace_id for e in evs))
    assert any(e.properties.get("$trace_id") == trace_id for e in found)
    assert "Traceback" not in proc.output(), proc.output()


# -- decode slots -----------------------------------------------------------------------------


def test_busy_decode_slots_answer_429_with_retry_after(sink):
    entered, release = threading.Event(), threading.Event()

    def hold(event):  # runs in the decode slot, on the worker thread
        if event["properties"].get("path") == "/api/orders/hold":
            entered.set()
            release.wait(30)
        return event

    limits = Limits(concurrent_decodes=1, decode_wait_s=0.2)
    with Receiver(sink, app_options={"limits": limits}, before_send=hold) as receiver:
        held = json_request([json_span(attributes=server_attributes(order_id="hold"))])
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(requests.post, receiver.traces_url, json=held, timeout=60)
            assert entered.wait(30)
            busy = requests.post(
                receiver.traces_url,
                json=json_request([json_span(attributes=server_attributes())]),
                timeout=30,
            )
            assert busy.status_code == 429, busy.text
            assert busy.headers["Retry-After"] == "2"
            assert busy.json()["code"] == 8
            release.set()
            assert first.result().status_code == 200
        again = json_request([json_span(attributes=server_attributes())])
        assert requests.post(receiver.traces_url, json=again, timeout=30).status_code == 200
        health = requests.get(receiver.url + "/health", timeout=10).json()
        assert health["busy"] == 1
    found = sink.wait_for(lambda evs: len(evs) >= 2, events=["api_request"])
    assert len(found) == 2


# -- the bearer token -------------------------------------------------------------------------


def test_non_ascii_bearer_token_is_401_not_500(sink):
    with Receiver(sink, receiver_token="s3cret-\u00e9") as receiver:
        body = json.dumps(json_request([json_span(attributes=server_attributes())])).encode()
        for raw in (b"Bearer s3cret-\xe9", b"Bearer \xff\xfe", b"Bearer \xc3\xa9t\xc3\xa9"):
            response = requests.post(
                receiver.traces_url, data=body, headers={**JSON, "Authorization": raw}
            )
            assert response.status_code == 401, (raw, response.status_code)
        right = {**JSON, "Authorization": "Bearer s3cret-\u00e9".encode()}
        assert requests.post(receiver.traces_url, data=body, headers=right).status_code == 200
    assert sink.wait_for(lambda evs: len(evs) >= 1)
