"""A second engine profile runs through the same server code: the seam between the server and the engine."""
import os
import subprocess
import sys

import numpy as np
import pytest
from live_server import FIXTURES
from test_process import spawn_server, wait_serving

from saywell.client import SaywellClient, load_audio
from saywell.engine.api import Engine, UtteranceHandle, create_engine, profile_names
from saywell.engine.options import EngineOptions
from saywell.engine.types import AssessmentRequest, EngineError


def test_the_registry_names_the_profiles_and_builds_each_through_the_protocol():
    assert profile_names()[0] == "cpu" and "synthetic" in profile_names()
    engine = create_engine(EngineOptions(profile="synthetic"))
    assert isinstance(engine, Engine) and engine.info.profile == "synthetic"
    assert isinstance(engine.begin_utterance(AssessmentRequest(audio=np.zeros(0, np.float32))), UtteranceHandle)


def test_an_unknown_profile_or_backend_is_refused_with_the_choices():
    with pytest.raises(EngineError, match="unknown engine profile 'gpu'; available: cpu, synthetic"):
        create_engine(EngineOptions(profile="gpu"))
    with pytest.raises(EngineError, match="no 'triton' backend"):
        create_engine(EngineOptions(profile="synthetic", backend="triton"))


def test_the_synthetic_profile_serves_a_stream_through_the_real_server_process():
    process, target = spawn_server(profile="synthetic")
    try:
        wait_serving(process, target, timeout=60)
        with SaywellClient(target) as client:
            capabilities = client.capabilities()
            responses = list(client.stream_file(load_audio(FIXTURES / "two_utterances.wav"), interim_results=True,
                                                realtime_factor=None, endpointing={"end_of_utterance_silence_ms": 500}))
    finally:
        process.terminate()
        process.wait(30)
    engine = capabilities.engine
    assert (engine.profile, engine.backend, engine.name) == ("synthetic", "local", "saywell-synthetic")
    assert engine.features.placeholder_scores and not engine.features.phones
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds.count("utterance") == 2 and kinds[-1] == "summary"
    finals = [r.utterance for r in responses if r.WhichOneof("event") == "utterance"]
    assert all(u.scores.total == 5.0 and u.words for u in finals)
    assert all(u.processing.engine.startswith("saywell-synthetic") for u in finals)


def test_a_server_refuses_to_start_with_an_unknown_profile():
    env = dict(os.environ, SAYWELL_PROFILE="gpu", SAYWELL_METRICS_PORT="0")
    result = subprocess.run([sys.executable, "-m", "saywell.server"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "profile must be one of cpu, synthetic, neural, lmm, got 'gpu'" in result.stderr


def test_a_server_whose_engine_cannot_start_says_why_and_exits_2(tmp_path):
    """The engine's own refusal (here: the neural profile without a model folder; likewise an unreachable
    Triton) ends the process with one line, not a traceback."""
    env = dict(os.environ, SAYWELL_PROFILE="neural", SAYWELL_MODEL_DIR=str(tmp_path / "missing"),
               SAYWELL_METRICS_PORT="0", SAYWELL_PORT="0")
    result = subprocess.run([sys.executable, "-m", "saywell.server"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "saywell-server: the engine could not start:" in result.stderr
    assert "Traceback" not in result.stderr
