"""The session's shared real server."""
import pytest
from live_server import RunningServer

from saywell.server.config import ServerConfig


@pytest.fixture(scope="session")
def server():
    running = RunningServer(ServerConfig(port=0, metrics_port=0, max_concurrent_streams=4, grace_s=5.0,
                                         max_utterance_ms=15_000))
    yield running
    running.stop()
