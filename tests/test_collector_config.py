"""collector-config.yaml (and the docs' snippets) checked structurally against otelcol-contrib.

No otelcol-contrib binary can be installed here (Debian has none; the PyPI wrapper is a
stripped build without the OTLP receiver), so ``otelcol-contrib validate`` is for users.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from .helpers import ROOT

CONFIG = ROOT / "collector-config.yaml"
DOCS = ROOT / "docs" / "collector.md"
COMPONENTS = json.loads((ROOT / "tests/data/otelcol_contrib_components.json").read_text())
KINDS = ("receivers", "processors", "exporters", "extensions", "connectors")
ENV_REF = re.compile(r"\$\{([^}]*)\}")


def component_type(component_id: str) -> str:
    """``otlphttp/posthog_bridge`` -> ``otlphttp`` (type/name, per the collector)."""
    return component_id.split("/", 1)[0]


def check_config(config: dict[str, Any]) -> None:
    pipelines = config["service"]["pipelines"]
    assert pipelines, "no pipelines"
    for kind in KINDS:
        for component_id in config.get(kind) or {}:
            assert component_type(component_id) in COMPONENTS[kind], (
                f"{kind[:-1]} {component_id!r} is not in otelcol-contrib {COMPONENTS['version']}"
            )
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] in ("traces", "metrics", "logs")
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for kind in ("receivers", "processors", "exporters"):
            for component_id in pipeline.get(kind, []):
                assert component_id in (config.get(kind) or {}), (
                    f"pipeline {name} uses {kind[:-1]} {component_id!r}, which is not defined"
                )
    for extension in config["service"].get("extensions", []):
        assert extension in (config.get("extensions") or {})


def test_component_list_is_documented():
    assert COMPONENTS["distribution"] == "otelcol-contrib"
    assert COMPONENTS["version"] and COMPONENTS["source"].startswith("https://github.com/")
    for kind in KINDS:
        assert len(set(COMPONENTS[kind])) == len(COMPONENTS[kind]) > 5


def test_collector_config_structure():
    config = yaml.safe_load(CONFIG.read_text())
    check_config(config)
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    processors = traces["processors"]
    assert processors[0] == "memory_limiter" and processors[-1] == "batch"
    assert {component_type(p) for p in processors} == {
        "memory_limiter",
        "filter",
        "attributes",
        "batch",
    }
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317}")
    assert protocols["http"]["endpoint"].endswith(":4318}")
    assert protocols["http"]["cors"]["allowed_origins"]


def test_exporter_points_at_the_receiver():
    config = yaml.safe_load(CONFIG.read_text())
    (exporter_id,) = config["service"]["pipelines"]["traces"]["exporters"]
    exporter = config["exporters"][exporter_id]
    assert component_type(exporter_id) == "otlphttp"
    endpoint = exporter["traces_endpoint"]
    assert endpoint == "${env:OTEL_POSTHOG_BRIDGE_ENDPOINT:-http://localhost:4319/v1/traces}"
    assert endpoint.rsplit(":-", 1)[1].rstrip("}").endswith("/v1/traces")  # the receiver's path
    assert exporter["compression"] == "gzip"
    assert exporter["retry_on_failure"]["enabled"] is True
    assert exporter["sending_queue"]["enabled"] is True
    assert exporter["headers"]["Authorization"].startswith(
        "Bearer ${env:OTEL_POSTHOG_RECEIVER_TOKEN"
    )
    # the PostHog OTLP tracing exporter is there, commented out
    assert "# otlphttp/posthog_traces:" in CONFIG.read_text()
    assert "/i/v1/traces" in CONFIG.read_text()


def test_filter_and_scrub_rules():
    config = yaml.safe_load(CONFIG.read_text())
    rules = " ".join(config["processors"]["filter/noise"]["traces"]["span"])
    for needle in ("http (send|receive)", '"OPTIONS"', "health"):
        assert needle in rules
    deleted = {a["key"] for a in config["processors"]["attributes/scrub"]["actions"]}
    assert {"http.request.header.authorization", "http.request.header.cookie"} <= deleted
    assert all(a["action"] == "delete" for a in config["processors"]["attributes/scrub"]["actions"])


def test_env_references_use_collector_syntax():
    text = CONFIG.read_text()
    refs = ENV_REF.findall(text)
    assert refs
    for ref in refs:
        assert re.fullmatch(r"env:[A-Z_][A-Z0-9_]*(:-[^}]*)?", ref), ref


def _doc_snippets() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    return [yaml.safe_load(block) for block in blocks]


@pytest.mark.parametrize("index", range(2))
def test_docs_scale_out_snippets(index):
    snippets = _doc_snippets()
    assert len(snippets) == 2
    check_config(snippets[index])


def test_docs_mention_validate_and_missing_binary():
    text = DOCS.read_text()
    assert "otelcol-contrib validate --config collector-config.yaml" in text
    assert "loadbalancing" in text and "routing_key: traceID" in text
    assert "No full `otelcol-contrib` binary" in text
