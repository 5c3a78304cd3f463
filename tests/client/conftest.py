"""Fixtures of the client tests: a fake saywell server on a free loopback port."""

from __future__ import annotations

import socket
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from fake_saywell import FakeServicer

from saywell.v1 import assessment_pb2_grpc as pb_grpc

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class FakeServer:
    target: str
    servicer: FakeServicer


@pytest.fixture
def fake_server():
    servicer = FakeServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_PronunciationAssessmentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield FakeServer(f"127.0.0.1:{port}", servicer)
    finally:
        server.stop(grace=None)


@pytest.fixture
def dead_target() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
