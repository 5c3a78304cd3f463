"""The neural profile behind the unchanged server: `python -m saywell.server --profile neural --model-dir DIR`
streams like the cpu profile (speech events, interim words, finals with phones and `heard`, a summary).

The models are tiny and random (engine/profiles/neural/plumbing.py): this proves the serving path, not scores.
"""
import pytest
from live_server import FIXTURES
from test_process import serving

from saywell.client import SaywellClient, load_audio
from saywell.engine.profiles.neural.plumbing import write_random_heads, write_random_models


@pytest.fixture(scope="module")
def neural_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neural-server-models")
    write_random_heads(write_random_models(folder))
    with serving(profile="neural", model_dir=str(folder), device="cpu") as target:
        yield target


def test_a_stream_gets_speech_events_interim_words_a_final_with_phones_and_a_summary(neural_server):
    with SaywellClient(neural_server) as client:
        capabilities = client.capabilities()
        responses = list(client.stream_file(load_audio(FIXTURES / "fox.wav"), interim_results=True, chunk_ms=100,
                                            realtime_factor=1.5, client_request_id="neural-1"))
    engine = capabilities.engine
    assert (engine.profile, engine.name) == ("neural", "saywell-neural")
    assert engine.features.phone_diagnosis and not engine.features.placeholder_scores
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds[0] == "speech_event" and kinds[-1] == "summary" and kinds.count("utterance") == 1
    assert all(r.client_request_id == "neural-1" for r in responses)
    final_at = kinds.index("utterance")
    interim = [r.interim_result for r in responses[:final_at] if r.WhichOneof("event") == "interim_result"]
    assert interim and any(u.stable_words or u.provisional_words for u in interim)
    utterance = responses[final_at].utterance
    assert {"quick", "brown", "fox"} <= {w.word for w in utterance.words}
    assert all(w.phones and all(p.heard for p in w.phones) for w in utterance.words)
    assert all(0 <= p.accuracy <= 2 for w in utterance.words for p in w.phones)
    s = utterance.scores
    assert all(0 <= v <= 10 for v in (s.accuracy, s.fluency, s.prosody, s.total)) and not s.HasField("completeness")
    assert utterance.processing.scorer == "heads" and utterance.processing.engine.startswith("saywell-neural")
    assert set(utterance.processing.model_versions) == {"asr", "aligner", "ssl", "heads"}
    assert responses[-1].summary.utterances == 1 and responses[-1].summary.utterance_errors == 0


def test_closed_mode_reports_completeness_over_the_reference(neural_server):
    reference = "my brother is ten years old"
    with SaywellClient(neural_server) as client:
        responses = list(client.stream_file(load_audio(FIXTURES / "brother.wav"), reference_text=reference,
                                            interim_results=False, realtime_factor=None))
    utterance = next(r.utterance for r in responses if r.WhichOneof("event") == "utterance")
    assert [w.word for w in utterance.words] == reference.split()
    assert utterance.scores.HasField("completeness") and 0 <= utterance.scores.completeness <= 10


@pytest.fixture(scope="module")
def packaged_server():
    """`saywell-server --profile neural` with no model folder: the shipped embedded weights (engine/data/neural)."""
    with serving(profile="neural", device="cpu") as target:
        yield target


def test_the_shipped_embedded_weights_serve_and_hear_a_misread_word(packaged_server):
    """Real weights (Whisper tiny.en's encoder, the phone head and heads trained on speechocean762): fox.wav read
    against its own text, and against a text with "fox" changed to "cat", which the speaker did not say.

    The phones carry the evidence (the goodness of "cat"'s phones collapses and the classifier hears what was said
    there, and the phone head scores its AE about 1.2 of 2); the word accuracy follows it only part of the way
    (cat: about 8.4 with the session 15 trees, against 9.95 for the fox said; engine/profiles/neural/README.md)."""
    audio = load_audio(FIXTURES / "fox.wav")
    finals = {}
    with SaywellClient(packaged_server) as client:
        engine = client.capabilities().engine
        for word in ("fox", "cat"):
            reference = f"the quick brown {word} jumps over the lazy dog"
            responses = list(client.stream_file(audio, reference_text=reference, interim_results=False,
                                                realtime_factor=None))
            finals[word] = next(r.utterance for r in responses if r.WhichOneof("event") == "utterance")
    assert (engine.profile, engine.name) == ("neural", "saywell-neural")
    versions = finals["fox"].processing.model_versions
    assert versions["ssl"].startswith("whisper-encoder:tiny.en (") and versions["aligner"].startswith("phone-head.pt@")
    read = {w.word: w for w in finals["fox"].words}["fox"]
    misread = {w.word: w for w in finals["cat"].words}["cat"]
    assert [p.phone for p in read.phones] == ["F", "AA", "K", "S"] and [p.phone for p in misread.phones] == ["K", "AE", "T"]
    assert min(p.goodness for p in read.phones) > -1.0  # said as written: the canonical phone wins its frames
    assert min(p.goodness for p in misread.phones) < -5.0
    assert [p.heard[0].phone for p in read.phones] == ["F", "AA", "K", "S"]
    assert misread.phones[1].heard[0].phone != "AE" and misread.phones[1].accuracy < read.phones[1].accuracy
    assert all(0 <= v <= 10 for v in (finals["cat"].scores.accuracy, misread.accuracy, read.accuracy))
    assert misread.accuracy < read.accuracy
