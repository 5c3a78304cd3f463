"""Feature extraction for training runs the serving stages on real audio and caches its results."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from saywell.engine.features.model_inputs import SENTENCE_SCALARS, TIMING_SCALARS, WORD_SCALARS
from saywell.engine.offline.dataset import load_corpus

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SAYWELL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "audio").mkdir()
    shutil.copy(FIXTURES / "fox.wav", tmp_path / "audio" / "u1.wav")
    words = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG".split()
    row = {"utt": "u1", "speaker": "s1", "text": " ".join(words), "accuracy": 9, "completeness": 10,
           "fluency": 9, "prosodic": 8, "total": 9,
           "words": [{"text": w, "accuracy": 10, "stress": 10, "total": 10} for w in words]}
    (tmp_path / "labels.jsonl").write_text(json.dumps(row) + "\n")
    return load_corpus(tmp_path)


def test_extraction_gives_closed_and_open_features_and_model_inputs(corpus):
    from saywell.engine.offline.calibration import FeatureExtractor

    extracted = FeatureExtractor().extract(corpus[0])
    assert [w.word.text for w in extracted.closed.words] == "the quick brown fox jumps over the lazy dog".split()
    assert {"fox", "dog"} <= {w.word.text for w in extracted.open.words}
    assert extracted.closed.sentence["n_words"] == 9
    assert all(w.recognized for w in extracted.closed.words)  # the ASR heard every word of clear speech


def test_training_inputs_are_built_once_and_cached(corpus):
    from saywell.engine.offline import training
    from saywell.engine.offline.items import training_items
    from saywell.engine.options import EngineOptions

    options = EngineOptions()
    records, failures = training.extract_inputs(corpus, 1, options)
    assert failures == []
    inputs, spans = records["u1"]["closed"]
    assert inputs.word_scalars.shape == (9, len(WORD_SCALARS) + len(TIMING_SCALARS))
    assert inputs.word_encoder.shape == (9, 384)  # Whisper tiny.en encoder width
    assert inputs.sentence.shape == (len(SENTENCE_SCALARS) + 2 * 384,)
    assert np.isfinite(inputs.word_encoder).all() and spans[0][0] < spans[-1][1]
    cached = list(training.analysis_folder(options).glob("*.pkl"))
    assert [p.stem for p in cached] == ["u1"]
    again, _ = training.extract_inputs(corpus, 1, options)  # from the cache: the same inputs
    assert np.array_equal(again["u1"]["closed"][0].word_scalars, inputs.word_scalars)
    items = training_items(corpus, records, "closed")
    assert items[0].word_targets.shape == (9, 3) and items[0].sentence_labels[0] == 9
