"""Container health check: grpc.health.v1 `Check` of the empty service name on this container's saywell port.

Exits 0 when the server answers SERVING, 1 otherwise: NOT_SERVING once SIGTERM has started the drain, or no
answer at all (not started, refusing connections, gone). The image's HEALTHCHECK and the Kubernetes exec
probes of deploy/k8s/overlays/direct-tls run it; deploy/k8s/base uses the kubelet's own `grpc:` probes, which
speak plaintext only.

It reads the server's own variables: SAYWELL_PORT (default 50051), and with SAYWELL_TLS_CERT set it speaks TLS,
trusting SAYWELL_HEALTHCHECK_CA (a PEM bundle; default: the server's chain, which suits a self-signed
certificate) and checking the certificate against SAYWELL_HEALTHCHECK_SERVER_NAME (default localhost). When the
server requires client certificates (SAYWELL_TLS_CLIENT_CA) it presents the server's own certificate and key,
which must then allow client authentication too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 4.0


def _channel(env: dict[str, str]) -> grpc.Channel:
    target = "127.0.0.1:" + env.get("SAYWELL_PORT", "50051")
    cert = env.get("SAYWELL_TLS_CERT", "")
    if not cert:
        return grpc.insecure_channel(target)
    root = Path(env.get("SAYWELL_HEALTHCHECK_CA") or cert).read_bytes()
    key_pair = {}
    if env.get("SAYWELL_TLS_CLIENT_CA"):
        key_pair = {"private_key": Path(env["SAYWELL_TLS_KEY"]).read_bytes(),
                    "certificate_chain": Path(cert).read_bytes()}
    credentials = grpc.ssl_channel_credentials(root_certificates=root, **key_pair)
    name = env.get("SAYWELL_HEALTHCHECK_SERVER_NAME", "localhost")
    return grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", name)])


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    try:
        with _channel(env) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                 timeout=TIMEOUT_S)
    except (grpc.RpcError, OSError) as exc:
        print(f"saywell health check: no answer: {exc}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"saywell health check: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
