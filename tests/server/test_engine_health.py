"""gRPC health follows the engine: NOT_SERVING while the engine says it cannot assess (a Triton it depends on
is down), SERVING again once it can, without a restart."""
import pathlib
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from saywell.server.config import ServerConfig

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "integration"))
from fake_engine import FakeEngine  # noqa: E402
from live_server import RunningServer  # noqa: E402


def status(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=5).status


def wait_for(predicate, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_health_is_not_serving_while_the_engine_cannot_assess_and_recovers_by_itself():
    engine = FakeEngine()
    server = RunningServer(ServerConfig(port=0, metrics_port=0, warm_up=False, grace_s=1.0,
                                        health_check_interval_s=0.1), engine=engine)
    try:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        assert status(server.target) == serving
        engine.unready = "Triton at 10.0.0.7:8001 is not ready"
        wait_for(lambda: status(server.target) == not_serving)
        assert status(server.target, "saywell.v1.PronunciationAssessmentService") == not_serving
        assert server.server.unready_reason == "Triton at 10.0.0.7:8001 is not ready"
        engine.unready = None
        wait_for(lambda: status(server.target) == serving)
        assert server.server.unready_reason is None
    finally:
        server.stop()


def test_a_failing_check_counts_as_not_ready():
    class Broken(FakeEngine):
        async def check(self):
            raise RuntimeError("probe exploded")

    server = RunningServer(ServerConfig(port=0, metrics_port=0, warm_up=False, grace_s=1.0,
                                        health_check_interval_s=0.1), engine=Broken())
    try:
        wait_for(lambda: status(server.target) == health_pb2.HealthCheckResponse.NOT_SERVING)
        assert "probe exploded" in server.server.unready_reason
    finally:
        server.stop()
