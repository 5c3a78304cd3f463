"""deploy/k8s: every overlay renders with kustomize (kubectl's), every object validates against the Kubernetes
1.37 schemas (kubernetes-validate, strict: unknown fields fail), and the objects agree with each other and
with the server: probes, grace periods, ports, selectors, metric names, the Envoy configuration."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from deploy_stack import ENVOY_CONFIG, REPO

from saywell.server.config import ServerConfig, load_config

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "direct-tls", "gpu", "triton")
KUBERNETES_VERSION = "1.37.0"
CRD_KINDS = {"ServiceMonitor"}  # monitoring.coreos.com/v1: not in the core schemas, checked structurally below


def kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with its built-in kustomize) is not on PATH: the manifests cannot be rendered "
                    "(it comes with this project's machine image; elsewhere install kubectl >= 1.27)")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


def find(objects: list[dict], kind: str, name: str) -> dict:
    """The object of that kind and name (a generated ConfigMap's name has a content hash appended)."""
    def named(actual: str) -> bool:
        return actual == name or (kind == "ConfigMap" and actual.rsplit("-", 1)[0] == name)
    matches = [o for o in objects if o["kind"] == kind and named(o["metadata"]["name"])]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_of(spec: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in spec.get("env", [])}


def validate_core(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_kubernetes(rendered, overlay):
    objects = rendered[overlay]
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
            "ServiceMonitor"} <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "saywell", f"{obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] not in CRD_KINDS:
            validate_core(obj)


def test_the_schema_check_rejects_what_kubernetes_would(rendered):
    """The validator is not a rubber stamp: a probe port given as a name (the grpc probe needs a number) and an
    unknown field both fail."""
    deployment = find(rendered["cpu"], "Deployment", "saywell")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    container(broken, "saywell")["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(broken)
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(typo)


def test_secrets_example_and_monitoring_objects_are_valid():
    for path in (K8S / "secrets.example.yaml",):
        for obj in yaml.safe_load_all(path.read_text()):
            validate_core(obj)
    monitoring = kustomize(K8S / "monitoring")
    assert {o["kind"] for o in monitoring} == {"ConfigMap"}
    for obj in monitoring:
        assert obj["metadata"]["namespace"] == "monitoring"
        validate_core(obj)


def test_saywell_pods_probe_grpc_health_and_outlast_their_drain(rendered):
    deployment = find(rendered["cpu"], "Deployment", "saywell")
    pod = deployment["spec"]["template"]["spec"]
    server = container(deployment, "saywell")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"] == {"port": 50051, "service": ""}, probe
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9464}
    # The pod's environment is a valid server configuration (files aside: they come from Secrets at run time).
    env = env_of(server)
    config = load_config([], environ={k: v for k, v in env.items() if not k.endswith("_FILE")})
    assert config.grace_s + 10 <= pod["terminationGracePeriodSeconds"], "SIGKILL must come after the drain"
    assert config.max_concurrent_streams == 3
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    assert os.path.dirname(env["SAYWELL_TOKENS_FILE"]) in mounts
    tokens_volume = next(v for v in pod["volumes"] if v["name"] == "tokens")
    assert tokens_volume["secret"]["secretName"] == "saywell-tokens"
    # Non-root, read-only, no privileges, and no Service-link variables that would look like SAYWELL_* settings.
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["enableServiceLinks"] is False
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_services_selectors_and_disruption_budgets_match_the_pods(rendered):
    objects = rendered["triton"]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        for obj in (o for o in objects if o["kind"] == kind):
            selector = obj["spec"]["selector"] if kind == "Service" else (
                obj["spec"]["selector"]["matchLabels"] if kind == "PodDisruptionBudget" else
                obj["spec"]["podSelector"]["matchLabels"])
            chosen = [d for d in deployments
                      if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            assert len(chosen) == 1, f"{kind} {obj['metadata']['name']} selects {len(chosen)} deployments"
            if kind == "Service":
                named = {p["name"] for c in chosen[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
                for port in obj["spec"]["ports"]:
                    assert port["targetPort"] in named, f"{obj['metadata']['name']}: no port {port['targetPort']}"


def test_envoy_runs_the_tested_configuration_and_reaches_the_pods(rendered):
    objects = rendered["cpu"]
    config_map = find(objects, "ConfigMap", "envoy-config")
    assert config_map["data"]["envoy.yaml"] == ENVOY_CONFIG.read_text()
    deployment = find(objects, "Deployment", "saywell-envoy")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]  # the hashed name
    assert volumes["tls"]["secret"]["secretName"] == "saywell-edge-tls"
    envoy = yaml.safe_load(config_map["data"]["envoy.yaml"])
    (cluster,) = envoy["static_resources"]["clusters"]
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    headless = find(objects, "Service", "saywell-headless")
    assert headless["spec"]["clusterIP"] == "None"  # DNS gives Envoy every ready pod, not one virtual IP
    assert address["address"] == f"saywell-headless.{headless['metadata']['namespace']}.svc.cluster.local"
    assert address["port_value"] in {p["port"] for p in headless["spec"]["ports"]}
    (listener,) = envoy["static_resources"]["listeners"]
    envoy_ports = {p["containerPort"] for p in container(deployment, "envoy")["ports"]}
    assert listener["address"]["socket_address"]["port_value"] in envoy_ports
    # The saywell NetworkPolicy admits exactly the pods this Deployment makes.
    policy = find(objects, "NetworkPolicy", "saywell")
    (grpc_rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 50051]
    assert grpc_rule["from"][0]["podSelector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["egress"] == []


def test_autoscaler_metrics_come_from_the_adapter_rules(rendered):
    hpa = find(rendered["cpu"], "HorizontalPodAutoscaler", "saywell")
    pod_metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert pod_metrics == {"saywell_active_streams", "saywell_engine_backlog"}
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    adapter = find(kustomize(K8S / "monitoring"), "ConfigMap", "prometheus-adapter-saywell")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    exposed = {rule["name"]["as"] for rule in rules}
    assert pod_metrics <= exposed
    for rule in rules:
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    per_pod_limit = load_config([], environ=env_of(container(find(rendered["cpu"], "Deployment", "saywell"),
                                                               "saywell")) | {"SAYWELL_TOKENS_FILE": ""})
    (streams,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
                  and m["pods"]["metric"]["name"] == "saywell_active_streams"]
    assert float(streams["pods"]["target"]["averageValue"]) < per_pod_limit.max_concurrent_streams, \
        "scale out before pods start refusing streams"


def test_service_monitor_scrapes_the_metrics_port(rendered):
    objects = rendered["cpu"]
    monitor = find(objects, "ServiceMonitor", "saywell")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval"} and endpoint["path"] == "/metrics"
    services = [o for o in objects if o["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= o["metadata"].get("labels", {}).items()]
    assert [s["metadata"]["name"] for s in services] == ["saywell-headless"]
    port = next(p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"])
    assert port["port"] == ServerConfig().metrics_port


def test_direct_tls_overlay_serves_tls_from_the_secret_and_probes_with_the_image_script(rendered):
    objects = rendered["direct-tls"]
    assert not [o for o in objects if "envoy" in o["metadata"]["name"]]
    deployment = find(objects, "Deployment", "saywell")
    server = container(deployment, "saywell")
    env = env_of(server)
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    for name in ("SAYWELL_TLS_CERT", "SAYWELL_TLS_KEY", "SAYWELL_HEALTHCHECK_CA"):
        assert os.path.dirname(env[name]) == mounts["tls"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "saywell-tls"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in server[probe]
        assert server[probe]["exec"]["command"] == ["python", "/opt/saywell/healthcheck.py"]
    public = find(objects, "Service", "saywell-public")
    assert public["spec"]["type"] == "LoadBalancer" and public["spec"]["ports"][0]["targetPort"] == "grpc"


def test_gpu_and_triton_overlays_request_gpus(rendered):
    gpu = container(find(rendered["gpu"], "Deployment", "saywell"), "saywell")
    assert gpu["image"] == "saywell:cuda" and gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert load_config([], environ={"SAYWELL_PROFILE": env_of(gpu)["SAYWELL_PROFILE"]}).profile == "cpu"
    triton = container(find(rendered["triton"], "Deployment", "saywell-triton"), "triton")
    assert triton["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-repository=/models" in triton["args"]
    saywell_policy = find(rendered["triton"], "NetworkPolicy", "saywell")
    assert any(rule["to"][0].get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "saywell-triton"}
               for rule in saywell_policy["spec"]["egress"])
