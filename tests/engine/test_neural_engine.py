"""The neural profile in its faithful-MultiPA configuration, with tiny random encoders: trained with
`saywell train --profile neural` on a tiny corpus made of the test fixtures, then assessed through create_engine
in both modes, alone and batched.

The encoders are random and the labels invented, so no score here says anything about pronunciation: the tests
check that every stage runs, batches across utterances, and gives complete, in-range, batch-invariant results.
"""
import asyncio
import dataclasses
import json
import pathlib
import shutil

import numpy as np
import pytest
import torch

from saywell.client.cli import main as saywell_cli
from saywell.engine.api import Engine, UtteranceHandle, create_engine
from saywell.engine.language.lexicon import Lexicon, strip_stress
from saywell.engine.offline.dataset import load_audio
from saywell.engine.options import BatchingOptions, EngineOptions
from saywell.engine.profiles.neural.heads import load_heads
from saywell.engine.profiles.neural.inputs import SENTENCE_FEATURES, WORD_FEATURES
from saywell.engine.profiles.neural.plumbing import PHONES, write_random_models
from saywell.engine.profiles.neural.trees import load_trees
from saywell.engine.types import AssessmentRequest, EngineError

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
TEXTS = {"fox": "the quick brown fox jumps over the lazy dog", "coffee": "I would like a cup of coffee please",
         "brother": "my brother is ten years old",
         "market_8k": "we went to the market yesterday and bought some apples"}
STAGES = ("asr", "phone_posteriors", "ssl", "align", "heads")
HEARD_NAMES = {p for p in PHONES if not p.startswith("[")} | {"SIL"}


def write_corpus(root: pathlib.Path) -> pathlib.Path:
    """The fixtures in the speechocean762 layout, with invented labels (plumbing only): each text read as is,
    and fox and brother once more against a reference with one word changed, that word labelled wrong."""
    (root / "audio").mkdir(parents=True)
    rows = []
    readings = [(name, text, None) for name, text in TEXTS.items()] + [
        ("fox", TEXTS["fox"].replace("fox", "cat"), "cat"), ("brother", TEXTS["brother"].replace("ten", "two"), "two")]
    for index, (name, text, wrong) in enumerate(readings):
        utt = f"{index:04d}"
        shutil.copy(FIXTURES / f"{name}.wav", root / "audio" / f"{utt}.wav")
        lexicon = Lexicon()
        words = [{"text": w.upper(), "accuracy": 3.0 if w == wrong else 9.0 + (i % 2), "stress": 10.0,
                  "total": 3.0 if w == wrong else 9.0, "phones": list(lexicon.pronounce(w)),
                  "phones_accuracy": [0.5 if w == wrong else 2.0] * len(lexicon.pronounce(w))}
                 for i, w in enumerate(text.split())]
        rows.append({"utt": utt, "speaker": f"s{index % 3}", "text": text.upper(), "accuracy": 6 if wrong else 9,
                     "fluency": 8, "prosodic": 7 + index % 2, "total": 6 if wrong else 8, "words": words})
    (root / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    """A tiny random model folder whose heads `saywell train --profile neural` trained for a few steps."""
    folder = tmp_path_factory.mktemp("neural-models")
    write_random_models(folder)
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    code = saywell_cli(["train", "--profile", "neural", "--data", str(corpus), "--model-dir", str(folder),
                        "--steps", "40", "--batch-size", "4", "--device", "cpu"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def heads_only(trained, tmp_path_factory) -> pathlib.Path:
    """`trained` serving its heads alone: neural.json without its trees. Tests of batching compare with it: a batch
    moves the stages' outputs by up to ~1e-5 (float sums in another order), and where an input sits on one of the
    trees' splits that turns into a step of the trees' score (with 12 examples a step is large), so batching is
    exact for the heads only (tests/engine/test_neural_trees.py covers the trees)."""
    folder = tmp_path_factory.mktemp("heads-only") / "models"
    shutil.copytree(trained, folder)
    config = json.loads((folder / "neural.json").read_text())
    del config["trees"]
    (folder / "neural.json").write_text(json.dumps(config))
    return folder


class LiveEngine:
    """An engine on its own event loop, kept for the module (it loads its models once)."""

    def __init__(self, options: EngineOptions) -> None:
        self.batches: list[tuple[str, int]] = []
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(options, on_batch=lambda stage, size, _seconds: self.batches.append((stage, size)))
        self.run(self.engine.warm_up())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.engine.close())
        self.loop.close()


@pytest.fixture(scope="module")
def live(trained):
    # A lone item waits up to 50 ms for companions, so concurrent utterances reliably share batches.
    batching = BatchingOptions(max_batch_size=8, max_wait_ms=50)
    engine = LiveEngine(EngineOptions(profile="neural", model_dir=str(trained), device="cpu", asr_batching=batching))
    yield engine
    engine.close()


def audio_of(name: str) -> np.ndarray:
    return load_audio(FIXTURES / f"{name}.wav")


def assert_complete(result, duration_ms: int) -> None:
    scores = result.scores
    for value in (scores.accuracy, scores.fluency, scores.prosody, scores.total):
        assert 0.0 <= value <= 10.0
    assert result.words and result.scorer == "heads"
    lexicon = Lexicon()
    previous_end = 0
    for word in result.words:
        assert all(0.0 <= v <= 10.0 for v in (word.accuracy, word.stress, word.total))
        assert previous_end <= word.start_ms < word.end_ms <= duration_ms + 20
        previous_end = word.end_ms
        assert [p.phone for p in word.phones] == [strip_stress(p) for p in lexicon.pronounce(word.text)]
        for phone in word.phones:
            assert word.start_ms <= phone.start_ms < phone.end_ms <= word.end_ms
            assert np.isfinite(phone.goodness) and phone.goodness <= 1e-6  # posterior GOP: 0 when it wins
            assert 0.0 <= phone.accuracy <= 2.0
            assert 1 <= len(phone.heard) <= 3 and {name for name, _ in phone.heard} <= HEARD_NAMES
            shares = [share for _, share in phone.heard]
            assert shares == sorted(shares, reverse=True) and 0 < shares[0] <= 1


def test_the_train_command_writes_heads_a_model_card_and_the_config(trained):
    config = json.loads((trained / "neural.json").read_text())
    assert config["trained"]["steps"] == 40 and config["trained"]["utterances"] == 6
    assert (trained / "heads.pt").is_file()
    card = (trained / "MODEL_CARD.md").read_text()
    assert "prove the plumbing only" in card and "6 utterances" in card
    first, last = (float(card.split(f"{k} ")[1].split()[0].rstrip(",")) for k in ("Loss (mean of the sets): first", "last"))
    assert last < first, "training lowers the loss"
    heads, meta = load_heads(trained / "heads.pt")
    assert len(heads.members) == meta["ensemble"] == 5 and "5 sets of heads whose scores are averaged" in card
    weights = [m.word_out.weight for m in heads.members]
    assert not any(torch.equal(weights[0], w) for w in weights[1:]), "each set was trained from its own seed"
    # trees fitted beside the heads, named by the config, described by the card; thresholds of the served scores
    assert config["trees"] == "trees.npz" and (trained / "trees.npz").is_file()
    assert meta["trees_share"] == 0.5 and "0.5 x the heads' + 0.5 x the trees'" in card
    trees, trees_meta = load_trees(trained / "trees.npz")
    assert trees.share == 0.5 and trees_meta["examples"] == meta["examples"]


def test_the_heads_sets_follow_their_seeds(tmp_path):
    """Two trainings with one seed give the same sets; another seed, other sets."""
    corpus = write_corpus(tmp_path / "corpus")
    states = []
    for run, seed in enumerate((5, 5, 6)):
        folder = tmp_path / f"models-{run}"
        write_random_models(folder)
        assert saywell_cli(["train", "--profile", "neural", "--data", str(corpus), "--model-dir", str(folder),
                            "--steps", "3", "--batch-size", "4", "--device", "cpu", "--ensemble", "2", "--limit", "3",
                            "--seed", str(seed)]) == 0
        states.append([m.state_dict() for m in load_heads(folder / "heads.pt")[0].members])
    # Not bit for bit: which utterances share a batch in the graph depends on timing (a loaded machine), and a
    # padded batch gives each item its lone result within ~1e-5, so the examples, and the weights after training
    # on them, may move by that much. Another seed starts from other weights altogether.
    def largest_difference(a, b):
        return max((a[k].float() - b[k].float()).abs().max().item() for k in a)

    same = [largest_difference(a, b) for a, b in zip(states[0], states[1])]
    other = [largest_difference(a, b) for a, b in zip(states[0], states[2])]
    assert max(same) < 1e-3 and min(other) > 1e-2, (same, other)


def test_closed_mode_scores_the_reference_words_with_phones_goodness_and_heard(live):
    audio = audio_of("fox")
    result = live.run(live.engine.assess(AssessmentRequest(audio, reference_text=TEXTS["fox"])))
    assert [w.text for w in result.words] == TEXTS["fox"].split()
    assert_complete(result, len(audio) // 16)
    assert 0.0 <= result.scores.completeness <= 10.0
    assert "quick brown fox" in result.transcript.lower()
    assert set(result.timings_ms) == {"asr", "align", "heads"}


def test_open_mode_scores_the_recognised_words(live):
    audio = audio_of("brother")
    result = live.run(live.engine.assess(AssessmentRequest(audio)))
    assert result.scores.completeness is None
    assert [w.text for w in result.words][:3] == ["my", "brother", "is"]
    assert_complete(result, len(audio) // 16)


def test_a_long_utterance_is_scored_as_its_sentence_sized_windows(heads_only):
    """Three fixtures joined (23 words): each window is scored as an utterance of its own, its SSL frames encoded
    from its own stretch of audio; the words and phones are the windows', the sentence their mean by words. (The
    folder without trees: a batch moves stage outputs by ~1e-5, which a tree split can turn into a step.)"""
    from saywell.engine.features.windows import sentence_ends, sentence_windows, window_bounds
    from saywell.engine.language.text import normalize_words
    from saywell.engine.stages.scheduler import URGENT

    names = ("fox", "coffee", "brother")
    gap = np.zeros(9600, np.float32)
    audio = np.concatenate([np.concatenate([audio_of(n), gap]) for n in names])
    text = " ".join(TEXTS[n] for n in names)
    live = LiveEngine(EngineOptions(profile="neural", model_dir=str(heads_only), device="cpu"))
    try:
        result = live.run(live.engine.assess(AssessmentRequest(audio, reference_text=text)))

        async def by_hand():
            graph = await live.engine.analyse(audio, text, (True,))
            inputs, heard = graph.analyses[True].inputs, graph.transcript.words
            windows = await live.engine.window_items(audio, inputs, heard, URGENT)
            spans = [tuple(span) for span in inputs.spans_ms.tolist()]
            cuts = sentence_windows(spans, sentence_ends(spans, heard))
            bounds = [(int(a), int(b)) for a, b in window_bounds(spans, cuts, len(audio) // 16)]
            alone = [await live.engine._ssl.submit(audio[a * 16:b * 16]) for a, b in bounds]
            short = await live.engine.analyse(audio_of("fox"), TEXTS["fox"], (True,))
            unwindowed = await live.engine.window_items(audio_of("fox"), short.analyses[True].inputs,
                                                        short.transcript.words, URGENT)
            return (cuts, windows, alone, [await live.engine._scores(w, URGENT) for w in windows],
                    [w.ends_sentence for w in heard], unwindowed)

        cuts, windows, alone, parts, ends, unwindowed = live.run(by_hand())
    finally:
        live.close()
    assert [w.text for w in result.words] == normalize_words(text)
    assert_complete(result, len(audio) // 16)
    assert sum(ends) >= 2  # Whisper closed the joined sentences
    # (random encoders align anywhere: the windows are whatever the aligned words and sentence ends give)
    assert len(windows) >= 2 and [len(w.words) for w in windows] == [b - a for a, b in cuts]
    for window, frames in zip(windows, alone):  # each window's frames: its stretch encoded on its own
        np.testing.assert_allclose(window.frames, frames, atol=1e-4)
    expected = np.average([p[1] for p in parts], axis=0, weights=[len(w.words) for w in windows])
    s = result.scores
    np.testing.assert_allclose([s.accuracy, s.fluency, s.prosody, s.total], expected, atol=1e-4)
    said = [i for i, w in enumerate(result.words) if w.error_type.name != "OMISSION"]
    words = np.concatenate([p[0] for p in parts])
    np.testing.assert_allclose([result.words[i].accuracy for i in said], words[said, 0], atol=1e-4)
    np.testing.assert_allclose([p.accuracy for w in result.words for p in w.phones],
                               np.concatenate([p[2] for p in parts]), atol=1e-4)
    assert unwindowed == []  # nine words: scored whole


def test_flags_grow_with_the_sensitivity(live):
    audio = audio_of("coffee")
    flagged = []
    for sensitivity in (0.0, 0.5, 1.0):
        result = live.run(live.engine.assess(AssessmentRequest(audio, TEXTS["coffee"], flag_sensitivity=sensitivity)))
        flagged.append({i for i, w in enumerate(result.words) if w.needs_improvement})
    assert flagged[0] <= flagged[1] <= flagged[2]


def test_a_batch_gives_each_utterance_what_it_gets_alone(heads_only):
    batching = BatchingOptions(max_batch_size=8, max_wait_ms=50)
    live = LiveEngine(EngineOptions(profile="neural", model_dir=str(heads_only), device="cpu", asr_batching=batching))
    try:
        check_batches_give_what_alone_gives(live)
    finally:
        live.close()


def check_batches_give_what_alone_gives(live):
    requests = [AssessmentRequest(audio_of(name), TEXTS[name] if closed else "")
                for name in ("fox", "coffee", "brother", "market_8k") for closed in (True, False)]
    alone = [live.run(live.engine.assess(r)) for r in requests]
    live.batches.clear()

    async def together():
        return await asyncio.gather(*(live.engine.assess(r) for r in requests))

    batched = live.run(together())
    largest = {stage: max(size for s, size in live.batches if s == stage) for stage in STAGES}
    assert all(size > 1 for size in largest.values()), largest
    for one, many in zip(alone, batched):
        assert one.transcript == many.transcript and [w.text for w in one.words] == [w.text for w in many.words]
        assert np.allclose([one.scores.accuracy, one.scores.fluency, one.scores.prosody, one.scores.total],
                           [many.scores.accuracy, many.scores.fluency, many.scores.prosody, many.scores.total],
                           atol=1e-4)
        for a, b in zip(one.words, many.words):
            assert (a.start_ms, a.end_ms, a.needs_improvement) == (b.start_ms, b.end_ms, b.needs_improvement)
            assert np.allclose([a.accuracy, a.stress, a.total], [b.accuracy, b.stress, b.total], atol=1e-4)
            assert np.allclose([p.goodness for p in a.phones], [p.goodness for p in b.phones], atol=1e-4)


def test_interim_words_are_scored_and_flagged_as_the_open_mode_final_scores_them(live):
    audio = audio_of("fox")
    words = live.run(live.engine.provisional_words(AssessmentRequest(audio, reference_text="the quick brown fox")))
    final = live.run(live.engine.assess(AssessmentRequest(audio)))  # open mode: the recognised words
    assert words and [w.text for w in words] == [w.text for w in final.words]
    for interim, scored in zip(words, final.words):
        assert interim.phones and [p.phone for p in interim.phones] == [p.phone for p in scored.phones]
        assert interim.needs_improvement == scored.needs_improvement
        assert 0 <= interim.accuracy <= 10
    # Interims decode greedily, finals with the beam, so the words' ASR probabilities (a head input) differ (by up
    # to 0.07 here); every other input is the same, and with the final's probabilities the interim's graph scores
    # exactly as the final (the trees split on the probability, so a small change in it can move a score a step).
    interim_graph, final_graph = (live.run(live.engine.analyse(audio, "", (False,), partial=partial))
                                  for partial in (True, False))
    interim_inputs, final_inputs = interim_graph.analyses[False].inputs, final_graph.analyses[False].inputs
    probability = [WORD_FEATURES.index("asr_probability")]
    others = [i for i in range(len(WORD_FEATURES)) if i not in probability]
    assert np.allclose(interim_inputs.words[:, others], final_inputs.words[:, others], atol=1e-6)
    assert np.array_equal(interim_inputs.phones, final_inputs.phones)
    words_with_final_probability = interim_inputs.words.copy()
    words_with_final_probability[:, probability] = final_inputs.words[:, probability]
    sentence = interim_inputs.sentence.copy()
    sentence[SENTENCE_FEATURES.index("asr_probability")] = final_inputs.sentence[SENTENCE_FEATURES.index("asr_probability")]
    item = live.engine.heads_item(interim_graph.frames, dataclasses.replace(
        interim_inputs, words=words_with_final_probability, sentence=sentence))
    scores = live.engine.trees(item, live.run(live.engine._heads.submit(item)))
    assert np.allclose(scores[0], [[w.accuracy, w.stress, w.total] for w in final.words], atol=1e-4)
    short = live.run(live.engine.provisional_words(AssessmentRequest(audio[:24000])))
    assert short and short[0].text == "the" and all(w.phones for w in short)


def test_an_utterance_handle_keeps_the_assessment_started_at_the_pause(live):
    audio = audio_of("brother")
    handle = live.engine.begin_utterance(AssessmentRequest(np.zeros(0, np.float32)))
    assert isinstance(handle, UtteranceHandle) and isinstance(live.engine, Engine)

    async def spoken():
        early = handle.paused(audio)
        result = await handle.finish(audio)
        return early, result

    early, result = live.run(spoken())
    assert early is not None and handle.path == "early" and result is early.result()
    longer = live.engine.begin_utterance(AssessmentRequest(np.zeros(0, np.float32)))

    async def resumed():
        longer.paused(audio[:16000])
        return await longer.finish(audio)

    assert live.run(resumed()).words and longer.path == "whole"


def test_info_names_the_profile_and_each_model_with_a_hash(live, trained):
    info = live.engine.info
    assert (info.profile, info.backend, info.name) == ("neural", "local", "saywell-neural")
    assert info.capabilities.phone_diagnosis and info.capabilities.assessment
    versions = info.model_versions
    assert versions["asr"].startswith("whisper-tiny.en")
    assert versions["aligner"].startswith("aligner@") and versions["ssl"].startswith("ssl@")
    assert versions["heads"].startswith("heads.pt@") and len(versions["heads"].split("@")[1]) == 12
    assert versions["trees"].startswith("trees.npz@") and len(versions["trees"].split("@")[1]) == 12


def test_a_hub_id_loads_only_with_allow_download(tmp_path):
    config = write_random_models(tmp_path)
    data = config.to_json()
    data["ssl"]["model"] = "facebook/hubert-base-ls960"
    (tmp_path / "neural.json").write_text(json.dumps(data))
    with pytest.raises(EngineError, match="'facebook/hubert-base-ls960' is no folder under .*, so a hub id, and "
                                          "downloads are off: pass --allow-download"):
        create_engine(EngineOptions(profile="neural", model_dir=str(tmp_path), device="cpu"))


def test_devices_are_checked_and_auto_picks_the_cpu_here(trained):
    with pytest.raises(EngineError, match="unknown device 'tpu'; use auto"):
        create_engine(EngineOptions(profile="neural", model_dir=str(trained), device="tpu"))
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto picks it")
    with pytest.raises(EngineError, match="'cuda' was asked for but torch .* sees no CUDA device"):
        create_engine(EngineOptions(profile="neural", model_dir=str(trained), device="cuda"))
    assert create_engine(EngineOptions(profile="neural", model_dir=str(trained))).device.type == "cpu"


def test_without_a_model_folder_the_packaged_embedded_configuration_loads(tmp_path, monkeypatch):
    from saywell.engine.profiles.neural import config

    engine = create_engine(EngineOptions(profile="neural"))
    assert engine.config.folder == config.PACKAGED_FOLDER and engine.config.embedded
    with pytest.raises(EngineError, match="no neural.json"):
        create_engine(EngineOptions(profile="neural", model_dir=str(tmp_path)))
    monkeypatch.setattr(config, "PACKAGED_FOLDER", tmp_path / "none")  # a build without the shipped weights
    with pytest.raises(EngineError, match="no packaged neural models: pass --model-dir"):
        create_engine(EngineOptions(profile="neural"))


def test_early_stopping_holds_speakers_out_of_the_heads_training_and_keeps_the_best_check(tmp_path):
    from saywell.engine.offline.dataset import load_corpus
    from saywell.engine.profiles.neural.training import Example, stopping_split

    corpus = load_corpus(str(write_corpus(tmp_path / "corpus")))
    examples = [Example(u.utt, closed, np.zeros(0, np.float32), None, np.zeros((0, 3)), np.zeros(4), np.zeros(0))
                for u in corpus for closed in (True, False)]
    fitted, stop_on = stopping_split(examples, corpus, 0.34, seed=1)
    speaker = {u.utt: u.speaker for u in corpus}
    assert {speaker[e.utt] for e in stop_on} and not {speaker[e.utt] for e in stop_on} & {speaker[e.utt] for e in fitted}
    assert len(fitted) + len(stop_on) == len(examples) and all(
        sum(e.utt == f.utt for f in stop_on) == 2 for e in stop_on), "both modes of an utterance go together"
    assert stopping_split(examples, corpus, 0.0, seed=1) == (examples, [])

    folder = tmp_path / "models"
    write_random_models(folder)
    code = saywell_cli(["train", "--profile", "neural", "--data", str(tmp_path / "corpus"), "--model-dir",
                        str(folder), "--steps", "40", "--batch-size", "4", "--device", "cpu",
                        "--stop-share", "0.34", "--check-every", "10"])
    assert code == 0
    _heads, meta = load_heads(folder / "heads.pt")
    assert len(meta["stopped_at"]) == len(meta["stop_loss"]) == meta["ensemble"] == 5
    assert all(step in (10, 20, 30, 40) for step in meta["stopped_at"]) and min(meta["stop_loss"]) > 0
    assert "Early stopping" in (folder / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--stop-share", "1"], "--stop-share must be in"), (["--stop-share", "-0.1"], "--stop-share must be in"),
    (["--check-every", "0"], "--check-every >= 1"), (["--steps", "0"], "--steps must be >= 1"),
    (["--ensemble", "0"], "--ensemble must be >= 1"),
    (["--ensemble", "2", "--finetune-encoder"], "1 with --finetune-encoder"),
    (["--trees-share", "1.5"], "--trees-share must be in"), (["--trees-share", "-0.5"], "--trees-share must be in"),
    (["--trees-share", "0.5", "--finetune-encoder"], "0 with --finetune-encoder")])
def test_training_settings_out_of_range_are_refused_before_any_work(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        saywell_cli(["train", "--profile", "neural", "--data", str(tmp_path / "none"), "--model-dir",
                     str(tmp_path / "models"), *flags])


def test_training_again_without_trees_serves_the_heads_alone(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    folder = tmp_path / "models"
    write_random_models(folder)
    common = ["train", "--profile", "neural", "--data", str(corpus), "--model-dir", str(folder), "--steps", "3",
              "--batch-size", "4", "--device", "cpu", "--ensemble", "1", "--limit", "3"]
    assert saywell_cli(common) == 0 and (folder / "trees.npz").is_file()
    assert json.loads((folder / "neural.json").read_text())["trees"] == "trees.npz"
    assert saywell_cli([*common, "--trees-share", "0"]) == 0
    assert not (folder / "trees.npz").exists() and "trees" not in json.loads((folder / "neural.json").read_text())
    assert "Trees: none" in (folder / "MODEL_CARD.md").read_text()
    engine = LiveEngine(EngineOptions(profile="neural", model_dir=str(folder), device="cpu"))
    try:
        assert "trees" not in engine.engine.info.model_versions
        result = engine.run(engine.engine.assess(AssessmentRequest(audio_of("fox"), TEXTS["fox"])))
        assert_complete(result, len(audio_of("fox")) * 1000 // 16000)
    finally:
        engine.close()
