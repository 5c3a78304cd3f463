"""The shipped trained scorer: loads lazily, scores real (synthesized) speech within sane ranges."""
import asyncio
import dataclasses
import pathlib

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.features.model_inputs import TIMING_SCALARS
from saywell.engine.features.phone_probe import PROBE_NAMES, STRESS_PROBE_NAMES
from saywell.engine.options import EngineOptions
from saywell.engine.profiles.cpu.engine import CpuEngine
from saywell.engine.scorers.trained import DEFAULT_MODEL_DIR, TrainedScorer, checkpoint_name
from saywell.engine.types import AssessmentRequest, EngineError, WordErrorType

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


def test_shipped_checkpoints_exist_are_small_and_carry_their_card():
    scorer = TrainedScorer()
    assert scorer.available()
    for mode in ("open", "closed"):
        path = DEFAULT_MODEL_DIR / f"trained-{mode}.pt"
        assert path.stat().st_size < 5 * 1024 * 1024
        _, meta = scorer.network(mode)
        assert meta["mode"] == mode and len(meta["flag_thresholds"]) == 3
        assert [row["aspect"] for row in meta["sentence_equating"]] == ["accuracy", "fluency", "prosody", "total"]
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text().count("|") > 10


def test_word_trees_ship_beside_every_checkpoint():
    scorer = TrainedScorer()
    for mode, single_asr in (("open", False), ("open", True), ("closed", False)):
        trees, meta = scorer.trees(mode, single_asr)
        assert meta["mode"] == mode and scorer.network(mode, single_asr)[1]["tree_share"] > 0
        assert trees.probe is not None and trees.probe.weight.shape[1] == trees.encoder_mean.shape[0]
        assert trees.probe.names == PROBE_NAMES + STRESS_PROBE_NAMES, "shipped probes carry the vowel-stress head"
        network, meta = scorer.network(mode, single_asr)
        # the network reads the probe's word features after the word and timing scalars
        assert meta["phone_probe"] and network.config.word_scalar_dim == (
            len(meta["word_scalars"]) + len(TIMING_SCALARS) + len(trees.probe.names))


def test_features_without_a_target_asr_are_scored_by_the_checkpoint_fitted_without_one():
    scorer = TrainedScorer()
    assert scorer.network("open")[1]["target_asr"] == "base"
    assert scorer.network("open", single_asr=True)[1]["target_asr"] is None
    assert (DEFAULT_MODEL_DIR / checkpoint_name("open", single_asr=True)).exists()


def test_a_model_folder_without_a_single_asr_checkpoint_falls_back_to_the_target_one(tmp_path):
    for mode in ("open", "closed"):
        (tmp_path / checkpoint_name(mode)).write_bytes((DEFAULT_MODEL_DIR / checkpoint_name(mode)).read_bytes())
    scorer = TrainedScorer(tmp_path)
    assert scorer.available() and scorer.trees("open", single_asr=True) is None
    assert scorer.network("open", single_asr=True)[1]["target_asr"] == "base"


def test_missing_checkpoint_is_a_clear_engine_error(tmp_path):
    scorer = TrainedScorer(tmp_path)
    assert not scorer.available()
    with pytest.raises(EngineError, match="trained-closed.pt is missing"):
        scorer.network("closed")


def assess(engine, audio, reference=""):
    async def run():
        engine.start()
        try:
            return await engine.assess(AssessmentRequest(audio=audio, reference_text=reference, scorer="trained"))
        finally:
            await engine.close()
    return asyncio.run(run())


@pytest.fixture(scope="module")
def engine():
    return CpuEngine(EngineOptions())


def test_the_trained_scorer_is_the_default_and_scores_a_fixture_in_range(engine):
    assert engine.scorer_names[0] == "trained" and "baseline" in engine.scorer_names
    audio, _ = sf.read(FIXTURES / "fox.wav", dtype="float32")
    closed = assess(engine, audio, "The quick brown fox jumps over the lazy dog")
    assert closed.scorer == "trained" and len(closed.words) == 9
    s = closed.scores
    for value in (s.accuracy, s.fluency, s.prosody, s.total):
        assert 3.0 <= value <= 10.0  # clear synthetic speech: no catastrophe
    assert s.completeness == 10.0
    assert all(0 <= w.accuracy <= 10 and 0 <= w.stress <= 10 for w in closed.words)
    opened = assess(engine, audio)
    assert opened.scores.completeness is None and {"fox", "dog"} <= {w.text for w in opened.words}


def test_words_that_were_not_said_are_omissions_and_lower_the_scores(engine):
    audio, _ = sf.read(FIXTURES / "brother.wav", dtype="float32")
    full = assess(engine, audio, "my brother is ten years old")
    padded = assess(engine, audio, "my brother is ten years old and he likes green apples")
    omitted = [w.text for w in padded.words if w.error_type is WordErrorType.OMISSION]
    assert len(omitted) >= 3 and set(omitted) <= {"and", "he", "likes", "green", "apples"}
    unsaid = [w for w in padded.words if w.error_type is WordErrorType.OMISSION]
    assert all(w.accuracy == 0 and w.total == 0 and w.needs_improvement for w in unsaid)
    assert all(w.stress > 5 for w in unsaid)  # raters judge stress only where a word was said wrongly
    assert padded.scores.completeness < full.scores.completeness


class RecordingScorer:
    name = "recording"

    def __init__(self):
        self.calls = []

    def score_words(self, features, sensitivity, encoder=None, single_asr=False):
        self.calls.append(("words", single_asr))
        return ()

    def score(self, features, closed, sensitivity, encoder=None, single_asr=False):
        self.calls.append(("final", single_asr))
        return None, ()

    def score_batch(self, jobs):
        from saywell.engine.scorers import score_each

        return score_each(self, jobs)


def test_the_scoring_stage_asks_for_the_single_asr_model_exactly_when_no_target_asr_words_came():
    from saywell.engine.profiles.cpu.scoring import ScoreItem, ScoringStage
    from saywell.engine.stages.alignment import AlignedPhone, AlignedWord, Alignment
    from saywell.engine.types import RecognizedWord, Transcript

    phone = AlignedPhone("AH", "AH1", 10, 40, -5.0, -5.0, 0.0, ("AH",))
    alignment = Alignment((AlignedWord("a", 10, 40, (phone,)),), 60, (("AH", 10, 40),))
    heard = Transcript("a", (RecognizedWord("a", 100, 400),))
    audio = np.zeros(9600, np.float32)
    scorer = RecordingScorer()
    stage = ScoringStage({"recording": scorer}, "recording")
    request = AssessmentRequest(audio=audio)
    items = [ScoreItem(audio, heard, alignment, request, partial=True),  # an interim decode
             ScoreItem(audio, heard, alignment, request, partial=True, target=heard),  # a segment with a target
             ScoreItem(audio, heard, alignment, request, partial=False, target=heard),  # a final with a target
             ScoreItem(audio, heard, alignment, request, partial=False)]  # a final from an engine without one
    stage.run_batch(items)
    assert scorer.calls == [("words", True), ("words", False), ("final", False), ("final", True)]


FIXTURE_TEXTS = (("fox", "the quick brown fox jumps over the lazy dog"), ("brother", "my brother is ten years old"))


def fixture_features(engine, name: str, text: str):
    """A fixture's closed-mode features and encoder frames, through the engine's own stages."""
    from saywell.engine.features.prosody import extract_prosody
    from saywell.engine.features.utterance import utterance_features
    from saywell.engine.stages.asr import AsrRequest

    audio = sf.read(FIXTURES / f"{name}.wav", dtype="float32")[0]
    transcript = engine.asr.run_batch([AsrRequest(audio, with_encoder=True)])[0]
    words = text.split()
    return (utterance_features(engine.aligner.align(audio, words), transcript, extract_prosody(audio), words),
            transcript.encoder)


def test_one_batch_scores_like_each_utterance_alone(engine):
    """score_batch runs one padded forward pass for utterances of different lengths and both modes; each
    result equals scoring that utterance alone."""
    from saywell.engine.scorers import ScoreJob

    scorer = engine.scoring.scorers["trained"]
    jobs = []
    for name, text in FIXTURE_TEXTS:
        features, encoder = fixture_features(engine, name, text)
        jobs += [ScoreJob(features, True, 0.5, encoder),
                 ScoreJob(features, False, 0.5, encoder, single_asr=True, words_only=True)]
    together = scorer.score_batch(jobs)
    alone = [scorer.score_batch([job])[0] for job in jobs]
    for job, batched, single in zip(jobs, together, alone):
        if not job.words_only:
            (sentence_a, batched), (sentence_b, single) = batched, single
            np.testing.assert_allclose(
                [sentence_a.accuracy, sentence_a.fluency, sentence_a.prosody, sentence_a.total],
                [sentence_b.accuracy, sentence_b.fluency, sentence_b.prosody, sentence_b.total], atol=1e-4)
        assert [w.text for w in batched] == [w.text for w in single] and batched
        np.testing.assert_allclose([w.accuracy for w in batched], [w.accuracy for w in single], atol=1e-4)


def test_a_long_utterance_is_scored_like_its_sentences(engine, monkeypatch):
    """Three fixtures joined with 0.6 s pauses (23 words) get the sentence scores of the three assessed alone,
    averaged by words: the scorer sees sentence-sized windows, each with the encoder frames of its own stretch.
    Scored whole, the same audio lands far lower: its pauses between sentences read as hesitations, and
    Whisper's frames past the first seconds carry positions the scorer never saw."""
    names = ("fox", "coffee", "brother")
    texts = ("the quick brown fox jumps over the lazy dog", "i would like a cup of coffee please",
             "my brother is ten years old")
    parts = [sf.read(FIXTURES / f"{name}.wav", dtype="float32")[0] for name in names]
    gap = np.zeros(9600, np.float32)
    audio = np.concatenate([np.concatenate([p, gap]) for p in parts])
    aspects = ("accuracy", "fluency", "prosody", "total")
    for reference in ("", " ".join(texts)):
        alone = [assess(engine, part, text if reference else "") for part, text in zip(parts, texts)]
        sizes = [len(a.words) for a in alone]
        expected = np.average([[getattr(a.scores, k) for k in aspects] for a in alone], axis=0, weights=sizes)
        joined = assess(engine, audio, reference)
        assert len(joined.words) == sum(sizes) == 23
        np.testing.assert_allclose([getattr(joined.scores, k) for k in aspects], expected, atol=0.15)
        monkeypatch.setattr(engine, "_windows", lambda *args: asyncio.sleep(0, result=()))
        whole = assess(engine, audio, reference)
        monkeypatch.undo()
        assert all(getattr(whole.scores, k) < e - 0.4 for k, e in zip(aspects, expected)), whole.scores


def test_windows_give_their_sentences_mean_by_words_and_a_window_that_fails_leaves_the_whole(engine):
    from saywell.engine.scorers import ScoreJob

    scorer = engine.scoring.scorers["trained"]
    parts = [fixture_features(engine, name, text) for name, text in FIXTURE_TEXTS]
    (fox, fox_encoder), (brother, brother_encoder) = parts
    alone = [scorer.score_batch([ScoreJob(f, True, 0.5, e)])[0][0] for f, e in parts]
    whole = ScoreJob(fox, True, 0.5, fox_encoder)
    windowed = scorer.score_batch([dataclasses.replace(whole, windows=tuple(parts))])[0]
    aspects = ("accuracy", "fluency", "prosody", "total")
    expected = np.average([[getattr(a, k) for k in aspects] for a in alone], axis=0, weights=[9, 6])
    np.testing.assert_allclose([getattr(windowed[0], k) for k in aspects], expected, atol=1e-4)
    assert [w.text for w in windowed[1]] == [w.word.text for w in fox.words]  # the words stay the whole's
    failing = scorer.score_batch([dataclasses.replace(whole, windows=((fox, None), (brother, brother_encoder)))])[0]
    alone_whole = scorer.score_batch([whole])[0][0]  # (padded in a batch with the windows: ~1e-6 apart)
    np.testing.assert_allclose([getattr(failing[0], k) for k in aspects], [getattr(alone_whole, k) for k in aspects],
                               atol=1e-4)


def test_a_checkpoints_equating_table_maps_its_sentence_scores(engine):
    """A checkpoint's `sentence_equating` (scorers/equating.py) maps the network's sentence scores linearly and
    clips them to the scale; word scores are left alone."""
    from saywell.engine.scorers import ScoreJob
    from saywell.engine.scorers.equating import equate

    features, encoder = fixture_features(engine, *FIXTURE_TEXTS[0])
    job = ScoreJob(features, True, 0.5, encoder)
    plain = TrainedScorer()
    network, meta = plain.network("closed")
    plain._networks[("closed", False)] = (network, {k: v for k, v in meta.items() if k != "sentence_equating"})
    aspects = ("accuracy", "fluency", "prosody", "total")
    table = [{"aspect": a, "from_mean": 7.0, "from_sd": 1.0, "to_mean": 7.5, "to_sd": s}
             for a, s in zip(aspects, (1.2, 1.5, 0.5, 30.0))]
    stretched = TrainedScorer()
    stretched._networks[("closed", False)] = (network, {**meta, "sentence_equating": table})
    (before, words_before), (after, words_after) = plain.score_batch([job])[0], stretched.score_batch([job])[0]
    expected = equate(np.array([getattr(before, k) for k in aspects]), table)  # the network's own scores, mapped
    np.testing.assert_allclose([getattr(after, k) for k in aspects], expected, atol=1e-4)
    assert expected[3] in (0.0, 10.0)  # a thirty-fold stretch lands on the scale's edge
    assert [w.accuracy for w in words_after] == [w.accuracy for w in words_before]
