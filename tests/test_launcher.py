"""Zero code: ``opentelemetry-instrument`` with the ``posthog`` distro, real processes.

The app (otel_posthog/demo/fastapi_app/plain_app.py) imports nothing of the bridge and calls
no instrumentor. Events are asserted at the local capture server.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections import Counter

import requests

from .helpers import VENV_BIN, AppProcess, bridge_env, needs_lifespan_hook
from .launcher_support import PLAIN_APP, launcher_argv, launcher_env, uvicorn_argv

REQUEST_EVENTS = {"api_request", "api_error", "slow_request"}
SESSION = "0190d6a8-3c1e-7c6e-9d2b-4b1f2f7d8e90"


def _journey(url: str) -> dict[str, requests.Response]:
    """The same requests against either app; keyed by a name."""
    token = requests.post(url + "/api/auth/login", json={}, timeout=5).json()["token"]
    auth = {
        "Authorization": f"Bearer {token}",
        "X-POSTHOG-SESSION-ID": SESSION,
        "Origin": "http://localhost:5173",  # as a browser on another origin sends
    }
    rid = str(uuid.uuid4())
    return {
        "messages": requests.get(
            url + "/api/chat/messages", headers={**auth, "X-Request-ID": rid}, timeout=5
        ),
        "missing": requests.get(url + "/api/chat/missing", headers=auth, timeout=5),
        "fail": requests.get(url + "/api/fail", headers=auth, timeout=5),
        "slow": requests.post(
            url + "/api/chat/send", json={"text": "x", "slow": True}, headers=auth, timeout=5
        ),
        "anonymous": requests.get(url + "/api/chat/42", timeout=5),
    }


def _events_by_request(sink, responses):
    out = {}
    for name, response in responses.items():
        rid = response.headers["X-Request-ID"]
        need = count_of(name)
        found = sink.wait_for(
            lambda evs, need=need: len([e for e in evs if e.event in REQUEST_EVENTS]) >= need,
            request_id=rid,
        )
        out[name] = sorted((e for e in found if e.event in REQUEST_EVENTS), key=lambda e: e.event)
    return out


def count_of(name: str) -> int:
    return {"fail": 2, "slow": 2}.get(name, 1)


def _shape(events):
    return [
        (
            e.event,
            "<request id>"
            if e.distinct_id == "request:" + e.properties["request_id"]
            else e.distinct_id,
            e.properties["endpoint"],
            e.properties["status_code"],
            e.properties.get("session_id"),
            e.properties.get("$process_person_profile"),
            frozenset(k for k in e.properties if k not in ("$lib_version",)),
        )
        for e in events
    ]


def test_zero_code_matches_the_configure_path(sink):
    """Same events, identity and X-Request-ID as configure(); only OTEL_PYTHON_DISTRO set."""
    launched = AppProcess(launcher_env(sink), argv=uvicorn_argv(PLAIN_APP))
    with launched:
        zero = _journey(launched.url)
        zero_events = _events_by_request(sink, zero)
    manual = AppProcess(bridge_env(sink, OTEL_SERVICE_NAME="api"))
    with manual:
        coded = _journey(manual.url)
        coded_events = _events_by_request(sink, coded)

    for name in zero:
        assert zero[name].status_code == coded[name].status_code, name
        rid = zero[name].headers["X-Request-ID"]
        assert zero[name].headers["traceresponse"].split("-")[1] == rid.replace("-", "")
        if name == "anonymous":  # no Origin: not a browser, no CORS list
            assert "Access-Control-Expose-Headers" not in zero[name].headers
        else:
            assert "X-Request-ID" in zero[name].headers["Access-Control-Expose-Headers"]
        assert len(zero_events[name]) == count_of(name), (name, zero_events[name])
        assert _shape(zero_events[name]) == _shape(coded_events[name]), name
        for e in zero_events[name]:
            assert e.properties["request_id"] == rid
            assert e.properties["service"] == "api"
    # the client's UUID X-Request-ID is the request id and the trace id
    rid = zero["messages"].headers["X-Request-ID"]
    event = zero_events["messages"][0]
    assert event.distinct_id == "user_12345"
    assert event.properties["$trace_id"] == rid.replace("-", "")
    assert event.properties["session_id"] == SESSION
    assert zero_events["anonymous"][0].properties["$process_person_profile"] is False
    assert all(e.properties["endpoint"] != "/health" for e in sink.events("api_request"))


def _run_launcher(env: dict[str, str], *command: str) -> str:
    full = dict(AppProcess({}).env)
    full.pop("OTEL_PYTHON_CONFIGURATOR", None)
    full.update(env)
    result = subprocess.run(
        launcher_argv(*command), env=full, capture_output=True, text=True, timeout=60
    )
    return result.stdout + result.stderr


PY = str(VENV_BIN / "python")
PROBE = (
    "from opentelemetry import trace, propagate; "
    "p = trace.get_tracer_provider(); "
    "from otel_posthog.api import processor_of; "
    "print('processor', processor_of(p) is not None); "
    "flat = lambda p: [m for x in getattr(p, '_propagators', [p]) for m in "
    "(flat(x) if hasattr(x, '_propagators') else [x])]; "
    "print('propagators', [type(x).__name__ for x in flat(propagate.get_global_textmap())])"
)


def test_distro_alone_selects_our_configurator_and_propagator(sink):
    out = _run_launcher(launcher_env(sink), PY, "-c", PROBE)
    assert "processor True" in out
    assert "PostHogPropagator" in out
    assert "TraceContextTextMapPropagator" in out  # the standard ones are kept
    assert "did not select" not in out


def test_mis_selection_is_a_warning_that_says_what_to_set(sink):
    # the stock distro and configurator chosen: the launcher warns before the app starts
    # (the stock distro's OTLP/gRPC defaults may fail before any of our code runs) ...
    env = launcher_env(sink, OTEL_PYTHON_DISTRO="distro", OTEL_PYTHON_CONFIGURATOR="configurator")
    out = _run_launcher(env, PY, "-c", PROBE)
    assert "processor False" in out
    assert "OTEL_PYTHON_DISTRO=distro" in out and "set OTEL_PYTHON_DISTRO=posthog" in out
    # ... and once the SDK is up, our post-instrument hook says what is missing
    for signal_ in ("TRACES", "METRICS", "LOGS"):
        env[f"OTEL_{signal_}_EXPORTER"] = "none"
    out = _run_launcher(env, PY, "-c", PROBE)
    assert "processor False" in out
    assert "did not select the PostHog distro/configurator" in out
    # our configurator under the stock distro: its defaults apply, and we say so
    env["OTEL_PYTHON_CONFIGURATOR"] = "posthog"
    out = _run_launcher(env, PY, "-c", PROBE)
    assert "processor True" in out
    assert "runs under another distro" in out and "OTEL_PYTHON_DISTRO=posthog" in out
    # both installed and nothing chosen: the launcher warns
    env = launcher_env(sink)
    del env["OTEL_PYTHON_DISTRO"]
    out = _run_launcher(env, PY, "-c", "pass")
    assert "several OpenTelemetry distros are installed" in out
    assert "OTEL_PYTHON_DISTRO=posthog" in out


def test_help_lists_our_settings():
    out = subprocess.run(launcher_argv("--help"), capture_output=True, text=True, timeout=60).stdout
    for flag in ("--posthog_jwt_secret", "--posthog_slow_request_threshold_ms"):
        assert flag in out
    assert "--posthog_propagate_identity" in out


def _many_requests(url: str, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with requests.Session() as session:
        for rid in ids:
            r = session.get(url + "/api/chat/7", headers={"X-Request-ID": rid}, timeout=5)
            assert r.status_code == 200 and r.headers["X-Request-ID"] == rid
    return ids


def _assert_one_event_each(sink, ids: list[str]) -> None:
    found = sink.wait_for(
        lambda evs: len({e.properties["request_id"] for e in evs}) >= len(ids),
        timeout_s=15,
        events=["api_request"],
    )
    counts = Counter(e.properties["request_id"] for e in found)
    assert all(counts[rid] == 1 for rid in ids), counts
    assert set(counts) >= set(ids)


def _stop_gracefully(app: AppProcess) -> None:
    app.signal(signal.SIGTERM)
    assert app.wait(30) in (0, -signal.SIGTERM), app.output()[-3000:]


@needs_lifespan_hook
def test_uvicorn_two_workers_one_event_per_request_nothing_lost_at_exit(sink):
    # a long flush interval: events only leave at the workers' shutdown flush
    env = launcher_env(sink, OTEL_POSTHOG_FLUSH_INTERVAL_MS="60000")
    # a loaded test machine can take more than uvicorn's default 5 s to start a worker
    argv = uvicorn_argv(PLAIN_APP, "--workers", "2", "--timeout-worker-healthcheck", "30")
    app = AppProcess(env, argv=argv)
    with app:
        ids = _many_requests(app.url, 30)
        assert not sink.events("api_request")
        _stop_gracefully(app)
    assert app.output().count("Started server process") >= 2
    _assert_one_event_each(sink, ids)


@needs_lifespan_hook
def test_gunicorn_uvicorn_workers_one_event_per_request_nothing_lost_at_exit(sink):
    env = launcher_env(sink, OTEL_POSTHOG_FLUSH_INTERVAL_MS="60000")
    argv = launcher_argv(
        str(VENV_BIN / "gunicorn"),
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        "2",
        "-b",
        "127.0.0.1:{port}",
        "--graceful-timeout",
        "10",
        PLAIN_APP,
    )
    app = AppProcess(env, argv=argv)
    with app:
        ids = _many_requests(app.url, 30)
        assert not sink.events("api_request")
        _stop_gracefully(app)
    assert app.output().count("Booting worker") >= 2
    _assert_one_event_each(sink, ids)


def test_posthog_exporter_under_the_stock_distro_works_and_warns(sink):
    """No processor (stock distro and configurator, app calls nothing): the exporter still
    makes one event per request from span attributes, and says identity is missing."""
    env = launcher_env(
        sink,
        OTEL_PYTHON_DISTRO="distro",
        OTEL_PYTHON_CONFIGURATOR="configurator",
        OTEL_TRACES_EXPORTER="posthog",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as app:
        for i in range(3):
            r = requests.get(f"{app.url}/api/chat/{i}", timeout=5)
            assert r.status_code == 200 and "X-Request-ID" not in r.headers  # no processor
        found = sink.wait_for(lambda evs: len(evs) >= 3, events=["api_request"])
        time.sleep(0.5)
        output = app.output()
    events = sink.events("api_request")
    assert len(events) == 3 and len({e.properties["request_id"] for e in events}) == 3
    assert sorted(e.properties["path"] for e in found) == [
        "/api/chat/0",
        "/api/chat/1",
        "/api/chat/2",
    ]
    assert "runs without the PostHog span processor" in output
    assert "OTEL_PYTHON_DISTRO=posthog" in output


def test_public_configurator_path_sends_each_request_when_it_ends(sink):
    """Where the SDK's configurator takes no bridge components (forced here with
    ``OTEL_POSTHOG_COMPAT=public``), the SDK builds the provider without the posthog
    exporter, which its ``BatchSpanProcessor`` would hold for ``OTEL_BSP_SCHEDULE_DELAY``:
    the bridge's processor sends each request when it ends, while the server runs."""
    env = launcher_env(sink, OTEL_POSTHOG_COMPAT="public", OTEL_BSP_SCHEDULE_DELAY="600000")
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as app:
        ids = _many_requests(app.url, 3)
        _assert_one_event_each(sink, ids)  # before the shutdown flush
    assert "Traceback" not in app.output()
