"""deploy/compose.yaml: `docker compose config` is not available here (the docker client has no compose plugin and
no daemon runs), so the file is parsed and checked against what it refers to: the Dockerfile and build context,
the server's settings, and the Prometheus job that must reach the server's metrics port."""
from __future__ import annotations

import re

import yaml
from deploy_stack import REPO

from saywell.server.config import load_config

COMPOSE = REPO / "deploy" / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def published(service: dict) -> dict[int, str]:
    """container port -> host address:port, from "HOST:PORT:CONTAINER" entries."""
    ports = {}
    for entry in service["ports"]:
        host, host_port, container = entry.split(":")
        ports[int(container)] = f"{host}:{host_port}"
    return ports


def test_saywell_service_builds_the_cpu_image_from_the_repository_root():
    saywell = compose()["services"]["saywell"]
    context = (COMPOSE.parent / saywell["build"]["context"]).resolve()
    assert context == REPO and (context / "pyproject.toml").is_file()
    assert (context / saywell["build"]["dockerfile"]).resolve() == REPO / "deploy" / "docker" / "cpu.Dockerfile"


def test_saywell_settings_are_valid_and_ports_are_published_on_loopback():
    saywell = compose()["services"]["saywell"]
    env = {key: str(value) for key, value in saywell["environment"].items()}
    # The image's own variables (cpu.Dockerfile) plus the compose file's make a valid server configuration.
    config = load_config([], environ={"SAYWELL_HOST": "0.0.0.0", **env})
    assert published(saywell) == {config.port: f"127.0.0.1:{config.port}",
                                  config.metrics_port: f"127.0.0.1:{config.metrics_port}"}
    grace = int(re.fullmatch(r"(\d+)s", saywell["stop_grace_period"]).group(1))
    assert grace > config.grace_s, "Docker's SIGKILL must come after the server's drain"
    assert saywell["read_only"] is True and saywell["cap_drop"] == ["ALL"]


def test_prometheus_scrapes_the_saywell_service_metrics_port():
    services = compose()["services"]
    prometheus = services["prometheus"]
    (volume,) = prometheus["volumes"]
    source, target, mode = volume.split(":")
    assert mode == "ro" and target in " ".join(prometheus["command"])
    scrape = yaml.safe_load((COMPOSE.parent / source).read_text())
    (job,) = scrape["scrape_configs"]
    (targets,) = [c["targets"] for c in job["static_configs"]]
    metrics_port = load_config([], environ={}).metrics_port
    assert targets == [f"saywell:{metrics_port}"]
    assert "saywell" in services and published(prometheus) == {9090: "127.0.0.1:9090"}
    # The host job (deploy/prometheus.yml, for the systemd unit) scrapes the same port.
    host_job = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert host_job["static_configs"][0]["targets"] == [f"127.0.0.1:{metrics_port}"]
