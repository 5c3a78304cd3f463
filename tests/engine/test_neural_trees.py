"""The neural profile's trees (engine/profiles/neural/trees.py): fitted on heads items, saved, loaded, blended."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from saywell.engine.profiles.neural.config import NeuralConfig, file_hash
from saywell.engine.profiles.neural.heads import HeadsItem
from saywell.engine.profiles.neural.inputs import PHONE_FEATURES, SENTENCE_FEATURES, WORD_FEATURES
from saywell.engine.profiles.neural.trees import TREES_FORMAT, TreesBlend, fit_trees, load_trees
from saywell.engine.types import EngineError

SSL_DIM = 24
GOP = WORD_FEATURES.index("gop_mean")
RATE = SENTENCE_FEATURES.index("words_per_s")


def corpus(count: int, seed: int):
    """Items whose word accuracy follows the word's mean GOP, stress errors come with a low margin, and sentence
    fluency follows the speaking rate; everything else is noise."""
    rng = np.random.default_rng(seed)
    items, word_targets, sentence_targets = [], [], []
    for _ in range(count):
        n = int(rng.integers(2, 9))
        frames = rng.normal(size=(n * 6, SSL_DIM)).astype(np.float32)
        spans = np.stack([np.arange(n) * 6, np.arange(n) * 6 + 6], 1)
        words = rng.normal(size=(n, len(WORD_FEATURES))).astype(np.float32)
        sentence = rng.normal(size=len(SENTENCE_FEATURES)).astype(np.float32)
        owner = np.repeat(np.arange(n), 3)
        phones = rng.normal(size=(len(owner), len(PHONE_FEATURES))).astype(np.float32)
        items.append(HeadsItem(frames, spans, words, sentence, phones, np.ones(len(owner), np.int64), owner))
        accuracy = np.clip(7 + 2 * words[:, GOP], 0, 10)
        stress = np.where(words[:, WORD_FEATURES.index("margin_mean")] < -1, 5.0, 10.0)
        targets = np.stack([accuracy, stress, accuracy], 1)
        targets[0] = np.nan  # an unlabelled word
        word_targets.append(targets)
        fluency = np.clip(6 + 2 * sentence[RATE], 0, 10)
        sentence_targets.append(np.array([fluency, fluency, fluency, fluency]))
    return items, word_targets, sentence_targets


@pytest.fixture(scope="module")
def fitted():
    return fit_trees(*corpus(400, 0))


def test_the_trees_learn_word_and_sentence_scores_from_the_heads_inputs(fitted):
    items, word_targets, sentence_targets = corpus(100, 1)
    predicted = [fitted.predict(item) for item in items]
    words = np.concatenate([w for w, _ in predicted])
    truth = np.concatenate(word_targets)
    known = ~np.isnan(truth[:, 0])
    assert np.corrcoef(words[known, 0], truth[known, 0])[0, 1] > 0.9
    assert np.corrcoef(words[known, 1], truth[known, 1])[0, 1] > 0.6  # stress: a classifier's expected label
    assert words[:, 1].min() >= 5 and words[:, 1].max() <= 10
    sentences = np.stack([s for _, s in predicted])
    assert np.corrcoef(sentences[:, 1], np.stack(sentence_targets)[:, 1])[0, 1] > 0.9
    assert all(w.shape == (len(i.words), 3) and s.shape == (4,) for i, (w, s) in zip(items, predicted))


def test_the_blend_averages_words_and_sentence_and_keeps_the_phone_head(fitted):
    item = corpus(1, 2)[0][0]
    heads = (np.full((len(item.words), 3), 4.0, np.float32), np.full(4, 2.0, np.float32),
             np.linspace(0, 2, len(item.phones)).astype(np.float32))
    words, sentence, phones = fitted.blend(item, heads)
    tree_words, tree_sentence = fitted.predict(item)
    assert np.allclose(words, 0.5 * 4.0 + 0.5 * tree_words) and np.allclose(sentence, 0.5 * 2.0 + 0.5 * tree_sentence)
    assert phones is heads[2]


def test_saved_trees_load_and_predict_the_same(fitted, tmp_path):
    path = tmp_path / "trees.npz"
    fitted.save(path, {"examples": 400})
    loaded, meta = load_trees(path)
    assert meta == {"examples": 400} and loaded.share == fitted.share and loaded.ssl_dim == SSL_DIM
    for item in corpus(5, 3)[0]:
        for mine, theirs in zip(fitted.predict(item), loaded.predict(item)):
            assert np.array_equal(mine, theirs)


def test_trees_of_other_inputs_other_heads_or_another_encoder_are_refused(fitted, tmp_path):
    heads, other_heads = tmp_path / "heads.pt", tmp_path / "other-heads.pt"
    heads.write_bytes(b"the heads the trees were fitted beside")
    other_heads.write_bytes(b"heads trained another time")
    path = tmp_path / "trees.npz"
    fitted.save(path, {"heads": file_hash(heads)})
    with np.load(path) as arrays:
        arrays = dict(arrays)
    header = json.loads(str(arrays["header"]))
    assert header["format"] == TREES_FORMAT
    header["word_features"] = header["word_features"][:-1]
    np.savez(tmp_path / "older.npz", **{**arrays, "header": np.asarray(json.dumps(header))})
    with pytest.raises(EngineError, match="fitted on other inputs than this saywell builds; train the heads again"):
        load_trees(tmp_path / "older.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(EngineError, match="is not a readable trees file"):
        load_trees(tmp_path / "broken.npz")
    (tmp_path / "empty.npz").write_bytes(b"")  # what a crash right after opening the file leaves
    with pytest.raises(EngineError, match="is not a readable trees file"):
        load_trees(tmp_path / "empty.npz")
    with pytest.raises(EngineError, match="there is no such file"):
        TreesBlend(tmp_path / "missing.npz", heads).check(SSL_DIM)
    # another heads.pt is refused on first use, whether or not the engine was warmed up (saywell eval is not)
    item = corpus(1, 7)[0][0]
    scores = (np.ones((len(item.words), 3)), np.ones(4), np.ones(len(item.phones)))
    with pytest.raises(EngineError, match=f"fitted beside heads {file_hash(heads)}, and other-heads.pt is"):
        TreesBlend(path, other_heads)(item, scores)
    fitted.save(tmp_path / "unrecorded.npz", {})
    with pytest.raises(EngineError, match="fitted without recording its heads"):
        TreesBlend(tmp_path / "unrecorded.npz", heads).check(SSL_DIM)
    with pytest.raises(EngineError, match=f"fitted on {SSL_DIM}-d SSL frames and the heads read 384-d ones"):
        TreesBlend(path, heads).check(384)
    TreesBlend(path, heads).check(SSL_DIM)


def test_the_trees_pool_word_and_utterance_frames_as_the_heads_do():
    import torch

    from saywell.engine.profiles.neural.heads import pool
    from saywell.engine.profiles.neural.trees import _mean, pooled_words

    item = corpus(1, 6)[0][0]
    item = dataclasses.replace(item, spans=np.array([[0, 1], [2, 9], [5, 5], *item.spans[3:]]))  # one empty
    words, utterance = pool(torch.from_numpy(item.frames)[None], torch.tensor([len(item.frames)]),
                            torch.from_numpy(item.spans)[None])
    assert np.allclose(pooled_words(item), words[0].numpy(), atol=1e-5) and not pooled_words(item)[2].any()
    assert np.allclose(_mean(item.frames), utterance[0].numpy(), atol=1e-5)
    assert not _mean(item.frames[:0]).any() and _mean(item.frames[:0]).shape == (SSL_DIM,)


def test_no_trees_leaves_the_heads_scores_as_they_are():
    item = corpus(1, 4)[0][0]
    scores = (np.ones((len(item.words), 3)), np.ones(4), np.ones(len(item.phones)))
    blend = TreesBlend(None, pathlib.Path("heads.pt"))
    assert not blend.enabled and blend(item, scores) is scores


def test_targets_of_one_value_give_trees_of_that_value():
    """A tiny corpus: no stress error and one accuracy everywhere."""
    items, word_targets, sentence_targets = corpus(5, 5)
    word_targets = [np.where(np.isnan(t), np.nan, np.array([8.0, 10.0, 7.0])) for t in word_targets]
    trees = fit_trees(items, word_targets, [np.full(4, 6.0)] * len(items))
    words, sentence = trees.predict(items[0])
    assert np.allclose(words[:, 0], 8.0) and np.allclose(words[:, 2], 7.0) and np.all(words[:, 1] > 9.99)
    assert np.allclose(sentence, 6.0)


def test_the_config_names_its_trees_and_round_trips(tmp_path):
    config = NeuralConfig.embedded_in(tmp_path, "tiny.en")
    assert config.trees is None and "trees" not in config.to_json()
    config.save()
    assert NeuralConfig.load(tmp_path).trees is None
    dataclasses.replace(config, trees=tmp_path / "trees.npz").save()
    assert json.loads((tmp_path / "neural.json").read_text())["trees"] == "trees.npz"
    assert NeuralConfig.load(tmp_path).trees == tmp_path.resolve() / "trees.npz"
