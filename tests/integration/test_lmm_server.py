"""The lmm profile behind the unchanged server: `python -m saywell.server --profile lmm --model-dir DIR` with a
tiny random Qwen2-Audio (engine/profiles/lmm/plumbing.py). A constrained generation reaches the client as a
final assessment; an unusable one (the "free" scorer: the tiny model's own text) as `utterance_error`, and the
stream goes on. This proves the serving path, not scores."""
import pytest
from live_server import FIXTURES
from test_process import serving

from saywell.client import SaywellClient, load_audio
from saywell.client.options import StreamOptions
from saywell.engine.profiles.lmm.plumbing import write_tiny_model

REFERENCE = "my brother is ten years old"


@pytest.fixture(scope="module")
def lmm_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lmm-server-models")
    write_tiny_model(folder)
    with serving(profile="lmm", model_dir=str(folder), device="cpu") as target:
        yield target


def events(target: str, **options) -> list:
    with SaywellClient(target) as client:
        return list(client.stream_with(load_audio(FIXTURES / "brother.wav"), StreamOptions(**options)))


def test_a_constrained_generation_reaches_the_client_as_a_final_assessment(lmm_server):
    with SaywellClient(lmm_server) as client:
        engine = client.capabilities().engine
    assert (engine.profile, engine.name) == ("lmm", "saywell-lmm") and list(engine.scorers) == ["constrained", "free"]
    assert not engine.features.interim_words and engine.features.phone_diagnosis
    responses = events(lmm_server, reference_text=REFERENCE, interim_results=True, realtime_factor=None,
                       client_request_id="lmm-1")
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds.count("utterance") == 1 and "utterance_error" not in kinds and kinds[-1] == "summary"
    assert "interim_result" not in kinds or all(not r.interim_result.stable_words for r in responses
                                                if r.WhichOneof("event") == "interim_result")
    utterance = next(r.utterance for r in responses if r.WhichOneof("event") == "utterance")
    assert [w.word for w in utterance.words] == REFERENCE.split()
    assert all(w.phones and all(0 <= p.accuracy <= 2 for p in w.phones) for w in utterance.words)
    s = utterance.scores
    assert all(0 <= v <= 10 for v in (s.accuracy, s.fluency, s.prosody, s.total, s.completeness))
    assert utterance.processing.scorer == "constrained" and set(utterance.processing.model_versions) == {
        "base_model", "processor"}


def test_an_unusable_generation_is_an_utterance_error_and_the_stream_goes_on(lmm_server):
    responses = events(lmm_server, reference_text=REFERENCE, interim_results=False, realtime_factor=None,
                       scorer="free")
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds.count("utterance_error") == 1 and "utterance" not in kinds and kinds[-1] == "summary"
    error = next(r.utterance_error for r in responses if r.WhichOneof("event") == "utterance_error")
    assert error.code == "INTERNAL" and "not JSON" in error.message
    assert responses[-1].summary.utterance_errors == 1 and responses[-1].summary.utterances == 0
