"""Interim word scores from the decode alone: the frame-word trees' inputs, fitting, files, and the cpu engine's
interims through them (no phone loop, no alignment)."""
import asyncio
import json
import pathlib

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.features.phone_probe import PHONES, PhoneProbe
from saywell.engine.options import EngineOptions
from saywell.engine.scorers.frame_words import (DEFAULT_PATH, ENCODER_FRAME_MS, SCALAR_NAMES, fit_frame_words,
                                                frame_word_inputs, load_frame_words)
from saywell.engine.types import AssessmentRequest, RecognizedWord

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
HELLO = ("HH", "AH0", "L", "OW1")


def pronounce(word: str) -> tuple[str, ...]:
    if word == "zzz":
        raise ValueError("no pronunciation")
    return HELLO


def test_each_word_is_pooled_over_its_span_and_its_phones_share_it_evenly():
    encoder = np.arange(50, dtype=np.float32)[:, None].repeat(3, axis=1)  # frame k holds k
    words = [RecognizedWord("hello", 100, 260, 0.9), RecognizedWord("zzz", 400, 480, 0.4),
             RecognizedWord("hello", 500, 660, 0.7)]
    inputs = frame_word_inputs(words, encoder, 1000, pronounce)
    assert inputs.scalars.shape == (3, len(SCALAR_NAMES)) and inputs.pooled.shape == (3, 3)
    # "hello" spans frames 5..12 (100..260 ms at 20 ms): its mean frame is 8.5
    assert inputs.pooled[0, 0] == pytest.approx(np.mean(np.arange(5, 13)))
    row = dict(zip(SCALAR_NAMES, inputs.scalars[0]))
    assert row["probability"] == pytest.approx(0.9) and row["n_phones"] == 4 and row["ms_per_phone"] == 40
    assert np.isnan(row["previous_probability"]) and row["next_probability"] == pytest.approx(0.4)
    assert row["gap_after_ms"] == 140 and row["words"] == 3
    assert dict(zip(SCALAR_NAMES, inputs.scalars[2]))["ms_to_edge"] == 340
    # the word without a pronunciation has no phones but keeps its numbers; the others have four phones each,
    # in order over their spans
    assert dict(zip(SCALAR_NAMES, inputs.scalars[1]))["n_phones"] == 0
    assert list(inputs.phones.words) == [0] * 4 + [2] * 4
    assert [PHONES[i] for i in inputs.phones.ids[:4]] == ["HH", "AH", "L", "OW"]
    first = inputs.phones.encoder[:4, 0]
    assert list(first) == sorted(first) and first[0] >= 5 and first[-1] <= 12
    assert list(inputs.phones.stress[:4]) == [-1, 0, -1, 1]


def _decodes(rng, count: int, dim: int = 8):
    """Synthetic decodes: a badly said word's frames lean along one axis, and its label says so."""
    inputs, targets = [], []
    for _ in range(count):
        bad = rng.random(5) < 0.3
        encoder = rng.normal(size=(60, dim)).astype(np.float32)
        words = []
        for k in range(5):
            start = 100 + 220 * k
            words.append(RecognizedWord("hello", start, start + 180, float(rng.uniform(0.5, 1.0))))
            if bad[k]:
                encoder[start // ENCODER_FRAME_MS:(start + 180) // ENCODER_FRAME_MS, 1] += 3.0
        inputs.append(frame_word_inputs(words, encoder, 1200, pronounce))
        accuracy = np.where(bad, 3.0, 9.0) + rng.normal(0, 0.3, 5)
        targets.append(np.stack([accuracy, np.where(bad, 8.0, 10.0), accuracy], axis=1))
    return inputs, targets


def _probe(dim: int, rng) -> PhoneProbe:
    return PhoneProbe(rng.normal(size=(len(PHONES), dim)), rng.normal(size=len(PHONES)), np.zeros(dim),
                      np.ones(dim))


def test_the_trees_learn_from_the_frames_and_survive_a_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    train, train_targets = _decodes(rng, 200)
    test, test_targets = _decodes(rng, 40)
    scorer = fit_frame_words(train, train_targets, _probe(8, rng), flag_thresholds=((0.0, 5.0), (1.0, 7.0)))
    predicted = np.concatenate([scorer.predict(i) for i in test])
    truth = np.concatenate(test_targets)
    assert np.corrcoef(predicted[:, 0], truth[:, 0])[0, 1] > 0.9
    path = tmp_path / "frame-words.npz"
    scorer.save(path, {"date": "2026-12-05"})
    loaded, meta = load_frame_words(path)
    assert meta["date"] == "2026-12-05"
    assert np.array_equal(np.concatenate([loaded.predict(i) for i in test]), predicted)
    assert loaded.flag_threshold(0.5) == pytest.approx(6.0)
    # flags: a word is flagged below the sensitivity's threshold, and called mispronounced under 5
    words = [RecognizedWord("hello", 100 + 220 * k, 280 + 220 * k, 0.9) for k in range(5)]
    encoder = rng.normal(size=(60, 8)).astype(np.float32)
    encoder[5:14, 1] += 3.0  # the first word said badly
    scored = loaded.score(words, encoder, 1200, pronounce, 0.5)
    assert scored[0].needs_improvement and scored[0].accuracy < 6
    assert not any(w.needs_improvement for w in scored[1:])
    assert [(w.start_ms, w.end_ms) for w in scored] == [(w.start_ms, w.end_ms) for w in words]
    # a last word Whisper timed past the decoded audio ends with it
    assert loaded.score(words, encoder, 1100, pronounce, 0.5)[-1].end_ms == 1100


def test_a_file_of_another_format_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    train, targets = _decodes(rng, 50)
    scorer = fit_frame_words(train, targets, _probe(8, rng))
    path = tmp_path / "frame-words.npz"
    scorer.save(path, {})
    with np.load(path) as arrays:
        contents = dict(arrays)
    meta = json.loads(str(contents["meta"]))
    contents["meta"] = np.asarray(json.dumps({**meta, "scalars": ["probability"]}))
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="another format"):
        load_frame_words(path)
    # trees fitted on another number of features (say, more principal components) would read the wrong columns
    contents["meta"] = np.asarray(json.dumps({**meta, "features": meta["features"] + 4}))
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="features"):
        load_frame_words(path)


def test_interim_words_must_name_a_known_way():
    with pytest.raises(ValueError, match="interim_words"):
        EngineOptions(interim_words="fast")


def _interims(options: EngineOptions, audio: np.ndarray):
    from saywell.engine.profiles.cpu.engine import CpuEngine

    stages = []

    async def run():
        engine = CpuEngine(options, on_batch=lambda name, size, seconds: stages.append(name))
        try:
            await engine.warm_up()
            stages.clear()
            return engine, await engine.provisional_words(AssessmentRequest(audio=audio))
        finally:
            await engine.close()

    engine, words = asyncio.run(run())
    return engine, words, stages


def _shipped() -> bool:
    from saywell.engine.scorers.trained import TrainedScorer

    return DEFAULT_PATH.exists() and TrainedScorer().available()


@pytest.mark.skipif(not _shipped(), reason="the frame-word trees or the trained checkpoints are not shipped")
def test_the_cpu_engines_interims_are_the_decode_alone_with_the_shipped_trees():
    audio = sf.read(FIXTURES / "fox.wav", dtype="float32")[0]
    options = EngineOptions(target_asr=None)
    engine, words, stages = _interims(options, audio)
    assert engine.frame_words is not None and "interim_words" in engine.model_versions()
    assert stages and set(stages) == {"asr"}, stages  # no phone loop, no alignment, no scorer batch
    assert "fox" in [w.text for w in words]
    assert all(0 <= w.start_ms < w.end_ms <= len(audio) * 1000 // 16000 for w in words)
    # the same synthetic speech through the whole graph
    graph_engine, graph_words, graph_stages = _interims(EngineOptions(target_asr=None, interim_words="graph"), audio)
    assert graph_engine.frame_words is None and {"loop", "align", "score"} <= set(graph_stages)


@pytest.mark.skipif(not _shipped(), reason="the frame-word trees or the trained checkpoints are not shipped")
def test_the_shipped_trees_flag_nothing_and_serve_only_the_recogniser_they_were_fitted_on():
    from saywell.engine.options import AsrOptions
    from saywell.engine.profiles.cpu.engine import CpuEngine

    scorer, meta = load_frame_words()
    # out of fold no threshold reached a precision target: stored as 0, under every (clipped) score
    assert all(threshold == 0.0 for _, threshold in scorer.flag_thresholds)
    assert CpuEngine(EngineOptions()).frame_words is not None and meta["asr"] == EngineOptions().asr.model
    # another recogniser's words and frames are not what the trees read: its interims go through the graph
    assert CpuEngine(EngineOptions(asr=AsrOptions(model="base"), target_asr=None)).frame_words is None


@pytest.mark.skipif(not _shipped(), reason="the frame-word trees or the trained checkpoints are not shipped")
def test_word_times_from_frame_interims_do_not_cut_segments_but_pauses_and_aligned_words_do():
    from saywell.engine.profiles.cpu.engine import CpuEngine

    audio = np.zeros(16000 * 3, np.float32)

    async def covered(options: EngineOptions, pause: bool) -> int:
        engine = CpuEngine(options)
        handle = engine.begin_utterance(AssessmentRequest(audio=audio[:1600]))  # open mode
        try:
            if pause:
                handle.silence(audio, 2050)
            else:
                handle.words_settled(audio, 2000, 2100)  # a word ends at 2.0 s, the next starts at 2.1 s
            return handle._chain.covered
        finally:
            handle.cancel()
            await engine.close()

    cut = 2050 * 16
    assert asyncio.run(covered(EngineOptions(), pause=False)) == 0  # Whisper's word times: no cut
    assert asyncio.run(covered(EngineOptions(), pause=True)) == cut  # a pause still cuts
    assert asyncio.run(covered(EngineOptions(interim_words="graph"), pause=False)) == cut  # aligned words cut


def test_the_cpu_profile_computes_on_one_thread_per_stage():
    """numpy's BLAS kept a second thread spinning through every Whisper decode (twice the CPU for no speed); the
    cpu profile limits it to one thread. Counted per thread from /proc, in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import os, numpy as np, soundfile as sf\n"
        "from saywell.engine.profiles.cpu.engine import CpuEngine\n"
        "from saywell.engine.stages.asr import AsrRequest\n"
        "engine = CpuEngine()\n"
        f"audio = sf.read({str(FIXTURES / 'fox.wav')!r}, dtype='float32')[0]\n"
        "def ticks():\n"
        "    out = {}\n"
        "    for t in os.listdir(f'/proc/{os.getpid()}/task'):\n"
        "        fields = open(f'/proc/{os.getpid()}/task/{t}/stat').read().rsplit(')', 1)[1].split()\n"
        "        out[t] = int(fields[11]) + int(fields[12])\n"
        "    return out\n"
        "engine.asr.run_batch([AsrRequest(audio, partial=True)])\n"
        "before = ticks()\n"
        "for _ in range(15):\n"
        "    engine.asr.run_batch([AsrRequest(audio, partial=True, with_encoder=True)])\n"
        "after = ticks()\n"
        "print(*sorted((after[t] - before.get(t, 0) for t in after), reverse=True))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    busiest, second, *_ = map(int, out.stdout.split())
    assert busiest >= 20, out.stdout  # the decodes ran (10 ms ticks)
    assert second < busiest / 4, out.stdout  # and on one thread
