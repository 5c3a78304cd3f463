"""The phone probe: encoder frames pooled per aligned phone, a softmax over phones fitted on them, and its
per-word goodness features; its vowel-stress head; the word trees fit it, use it and carry it through save/load."""
import numpy as np
import pytest

from saywell.engine.features.model_inputs import ModelInputs
from saywell.engine.features.phone_probe import (CONSONANT, PHONE_INDEX, PHONES, PROBE_NAMES, STRESS_PROBE_NAMES,
                                                 PhoneFrames, PhoneProbe, fit_phone_probe, phone_frames)
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord

DIM = 12


def phone(name: str, start: int, end: int) -> AlignedPhone:
    return AlignedPhone(name, name + ("1" if name[0] in "AEIOU" else ""), start, end, -1.0, -1.0, 0.0, ())


def test_frames_are_pooled_per_phone_on_the_20_ms_encoder_grid():
    encoder = np.arange(20, dtype=np.float32)[:, None].repeat(DIM, axis=1)  # frame k holds k
    words = [AlignedWord("at", 0, 8, (phone("AE", 0, 4), phone("T", 4, 8))),
             AlignedWord("sil", 8, 10, (phone("SIL", 8, 10),)),  # not a phone of PHONES: left out
             AlignedWord("a", 10, 13, (phone("AH", 10, 13),))]
    frames = phone_frames(words, encoder)
    assert frames.ids.tolist() == [PHONE_INDEX["AE"], PHONE_INDEX["T"], PHONE_INDEX["AH"]]
    assert frames.words.tolist() == [0, 0, 2]
    # 10 ms frames 0-4 -> encoder frames 0-1; 4-8 -> 2-3; 10-13 -> 5-6 (rounded outwards)
    assert frames.encoder[:, 0].tolist() == [0.5, 2.5, 5.5]
    assert frames.stress.tolist() == [1, CONSONANT, 1]  # the lexicon's stress digit of each vowel
    assert len(phone_frames([], encoder).ids) == 0


CENTRES = np.random.default_rng(7).normal(scale=3.0, size=(len(PHONES), DIM))


def synthetic_phones(n_utterances: int, rng) -> list[PhoneFrames]:
    """Each phone's frames sit around its own centre, so a probe can tell the phones apart."""
    centres = CENTRES
    out = []
    for _ in range(n_utterances):
        ids = rng.integers(0, len(PHONES), size=10)
        out.append(PhoneFrames(ids, np.repeat(np.arange(5), 2),
                               (centres[ids] + rng.normal(size=(10, DIM))).astype(np.float32)))
    return out


def test_probe_scores_a_phone_that_sounds_like_itself_above_one_that_does_not():
    rng = np.random.default_rng(0)
    probe = fit_phone_probe(synthetic_phones(200, rng))
    held = synthetic_phones(20, rng)
    good = [probe.word_features(p, 5) for p in held]
    # the same frames labelled with another phone: what a mispronunciation looks like to the probe
    wrong = [probe.word_features(PhoneFrames((p.ids + 1) % len(PHONES), p.words, p.encoder), 5) for p in held]
    good, wrong = np.concatenate(good), np.concatenate(wrong)
    assert good.shape == (100, len(PROBE_NAMES))
    assert np.median(good[:, 0]) > -0.1 and np.median(wrong[:, 0]) < -3  # mean probe GOP of the word
    assert (good[:, 1] <= good[:, 0] + 1e-9).all()  # the minimum is at most the mean
    assert good[:, 3].mean() < 0.1 < wrong[:, 3].mean()  # share of low phones
    no_phones = probe.word_features(PhoneFrames.empty(DIM), 3)
    assert no_phones.shape == (3, len(PROBE_NAMES)) and not no_phones.any()


def test_word_trees_fit_the_probe_and_keep_it_through_save_and_load(tmp_path):
    pytest.importorskip("sklearn", reason="fitting word trees needs the `train` extra (scikit-learn)")
    from saywell.engine.scorers.word_trees import fit_word_trees, load_word_trees

    rng = np.random.default_rng(1)
    inputs, targets = [], []
    for phones in synthetic_phones(300, rng):
        # a fifth of the words are "mispronounced": their phones are labelled with the wrong phone
        bad = rng.random(5) < 0.2
        ids = np.where(bad[phones.words], (phones.ids + 3) % len(PHONES), phones.ids)
        sentence = rng.normal(size=3 + 2 * DIM).astype(np.float32)
        inputs.append(ModelInputs(rng.normal(size=(5, 4)).astype(np.float32),
                                  rng.normal(size=(5, DIM)).astype(np.float32), sentence,
                                  PhoneFrames(ids, phones.words, phones.encoder)))
        accuracy = np.where(bad, 3.0, 9.0)
        targets.append(np.stack([accuracy, np.full(5, 10.0), accuracy], axis=1).astype(np.float32))
    trees = fit_word_trees(inputs[:240], targets[:240])
    assert trees.probe is not None
    predicted = np.concatenate([trees.predict(i) for i in inputs[240:]])
    truth = np.concatenate(targets[240:])
    assert np.corrcoef(predicted[:, 0], truth[:, 0])[0, 1] > 0.8  # only the probe can see which words are bad
    path = tmp_path / "word-trees-closed.npz"
    trees.save(path, {})
    loaded, _ = load_word_trees(path)
    assert np.array_equal(loaded.probe.weight, trees.probe.weight)
    assert np.array_equal(np.concatenate([loaded.predict(i) for i in inputs[240:]]), predicted)


def test_the_network_view_appends_the_probe_features_to_the_word_scalars():
    from saywell.engine.features.phone_probe import with_probe_scalars

    rng = np.random.default_rng(2)
    probe = fit_phone_probe(synthetic_phones(100, rng))
    phones = synthetic_phones(1, rng)[0]
    inputs = ModelInputs(rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, DIM)).astype(np.float32),
                         rng.normal(size=3 + 2 * DIM).astype(np.float32), phones)
    seen = with_probe_scalars(inputs, probe)
    assert seen.word_scalars.shape == (5, 4 + len(PROBE_NAMES))
    assert np.array_equal(seen.word_scalars[:, :4], inputs.word_scalars)
    assert np.allclose(seen.word_scalars[:, 4:], probe.word_features(phones, 5))
    bare = with_probe_scalars(ModelInputs(inputs.word_scalars, inputs.word_encoder, inputs.sentence), probe)
    assert bare.word_scalars.shape == (5, 4 + len(PROBE_NAMES)) and not bare.word_scalars[:, 4:].any()


VOWELS = [PHONE_INDEX[v] for v in ("AA", "AE", "AH", "EH", "IH", "IY", "UW")]
STRESS_DIRECTION = np.random.default_rng(9).normal(size=DIM)


def two_vowel_words(n_utterances: int, rng, misplaced_share: float = 0.0) -> tuple[list[PhoneFrames], np.ndarray]:
    """Five two-vowel words per utterance; the vowel the learner stressed sounds louder (frames moved along
    STRESS_DIRECTION). The lexicon's stress (PhoneFrames.stress) is on the first vowel; in `misplaced_share` of
    the words the learner stressed the second."""
    out, misplaced = [], []
    for _ in range(n_utterances):
        ids = rng.choice(VOWELS, size=10)
        wrong = rng.random(5) < misplaced_share
        stressed = np.where(np.arange(10) % 2 == 0, ~wrong.repeat(2), wrong.repeat(2))
        encoder = CENTRES[ids] + rng.normal(size=(10, DIM)) + 2.0 * stressed[:, None] * STRESS_DIRECTION
        out.append(PhoneFrames(ids, np.repeat(np.arange(5), 2), encoder.astype(np.float32), np.tile([1, 0], 5)))
        misplaced.append(wrong)
    return out, np.concatenate(misplaced)


def test_the_stress_head_tells_a_misplaced_stress_from_a_right_one():
    rng = np.random.default_rng(3)
    probe = fit_phone_probe(two_vowel_words(200, rng)[0])
    assert probe.names == PROBE_NAMES + STRESS_PROBE_NAMES
    held, misplaced = two_vowel_words(40, rng, misplaced_share=0.5)
    features = np.concatenate([probe.word_features(p, 5) for p in held])[:, len(PROBE_NAMES):]
    margin, flagged = features[:, 2], features[:, 3]
    assert np.median(margin[~misplaced]) > 1 and np.median(margin[misplaced]) < -1
    assert (flagged == misplaced).mean() > 0.9
    # a one-vowel word has no contrast: only its vowel's logit; the network sees the missing ones as 0
    single = PhoneFrames(held[0].ids[:1], np.zeros(1, np.int64), held[0].encoder[:1], np.array([1]))
    row = probe.word_features(single, 1)[0, len(PROBE_NAMES):]
    assert np.isfinite(row[0]) and np.isnan(row[1:]).all()
    from saywell.engine.features.phone_probe import with_probe_scalars
    seen = with_probe_scalars(ModelInputs(np.zeros((1, 4), np.float32), np.zeros((1, DIM), np.float32),
                                          np.zeros(3 + 2 * DIM, np.float32), single), probe)
    assert np.isfinite(seen.word_scalars).all() and seen.word_scalars.shape == (1, 4 + len(probe.names))
    loaded = PhoneProbe.from_arrays(probe.arrays())
    assert np.array_equal(loaded.word_features(held[0], 5), probe.word_features(held[0], 5), equal_nan=True)
    # a probe saved before the stress head existed loads without it
    old = {k: v for k, v in probe.arrays().items() if "stress" not in k}
    assert PhoneProbe.from_arrays(old).names == PROBE_NAMES
