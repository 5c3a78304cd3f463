"""Every saywell metric the deploy files and docs name (Grafana dashboard, HPA, Prometheus adapter rules,
deploy/PRODUCTION.md) is one the server exports, with the suffixes its type gives it."""
from __future__ import annotations

import json
import re

import yaml
from deploy_stack import REPO

from saywell.server.metrics import ServerMetrics

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> set[str]:
    names = set()
    for family in ServerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        if family.type == "histogram":
            names.add(family.name)  # docs name a histogram by its family
    return names


def named_in(text: str) -> set[str]:
    return set(re.findall(r"\bsaywell_[a-z_]+[a-z]", text))


def test_the_metric_check_knows_the_server_names():
    names = exported()
    assert {"saywell_active_streams", "saywell_streams_total", "saywell_final_latency_seconds_bucket"} <= names
    assert "saywell_streams" not in names  # a counter's series carry _total


def test_dashboard_queries_use_exported_metrics():
    dashboard = json.loads((REPO / "deploy" / "grafana" / "saywell.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(named_in(e) for e in exprs))
    assert len(used) >= 10
    assert used <= exported(), used - exported()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_autoscaling_and_adapter_metrics_are_exported_or_pending():
    hpa = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "autoscaling.yaml").read_text())
    pod_metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    adapter = yaml.safe_load((REPO / "deploy" / "k8s" / "monitoring" / "prometheus-adapter.yaml").read_text())
    queried = named_in(adapter["data"]["config.yaml"])
    assert pod_metrics <= queried
    assert queried <= exported()
    assert {"saywell_active_streams"} <= pod_metrics


def test_production_doc_names_only_exported_metrics():
    doc = (REPO / "deploy" / "PRODUCTION.md").read_text()
    named = named_in(doc)
    assert named <= exported(), named - exported()
