"""The neural profile's parts on hand-made inputs: the batch-invariant encoder forward, the phone sequence and
its silences, what `heard` reports, omissions and completeness, the labels training maps to words, and
fine-tuning the SSL encoder end to end."""
import json
import pathlib
import shutil

import numpy as np
import pytest
import torch

from saywell.engine.language.lexicon import Lexicon
from saywell.engine.profiles.neural.alignment import (PhoneInventory, PhoneSequence, aligned_words, heard_over,
                                                      phone_sequence)
from saywell.engine.profiles.neural.config import NeuralConfig
from saywell.engine.profiles.neural.encoders import SpeechEncoder, load_ssl_encoder, normalize_audio
from saywell.engine.profiles.neural.heads import DEFAULT_FLAG_THRESHOLDS
from saywell.engine.profiles.neural.inputs import (PHONE_CLASSES, PHONE_FEATURES, SENTENCE_FEATURES, WORD_FEATURES,
                                                   head_inputs)
from saywell.engine.profiles.neural.plumbing import PHONES, write_random_models
from saywell.engine.profiles.neural.scoring import scored_result
from saywell.engine.profiles.neural.training import labelled_targets
from saywell.engine.stages.frame_alignment import FrameAlignment, PhoneGop
from saywell.engine.types import AssessmentRequest, EngineError, InputError, RecognizedWord, WordErrorType

INVENTORY = PhoneInventory.of(PHONES, "[SIL]")
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> NeuralConfig:
    return write_random_models(tmp_path_factory.mktemp("tiny"))


def test_a_padded_batch_gives_each_item_its_own_frames_where_transformers_does_not(tiny):
    encoder = load_ssl_encoder(tiny.ssl, allow_download=False)
    rng = np.random.default_rng(1)
    clips = [torch.from_numpy(rng.normal(0, 0.1, n).astype(np.float32)) for n in (16000, 7000)]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(2, 16000)
    for row, clip in enumerate(clips):
        batch[row, :len(clip)] = clip
    with torch.no_grad():
        together, frames = encoder(batch, lengths)
        alone = [encoder(c[None], torch.tensor([len(c)]))[0][0] for c in clips]
        # transformers' own forward of the same padded batch, its attention mask included
        normalized = normalize_audio(batch, lengths)
        mask = torch.arange(16000)[None, :] < lengths[:, None]
        theirs = encoder.model(normalized, attention_mask=mask.long()).last_hidden_state
    short = int(frames[1])
    assert [len(a) for a in alone] == frames.tolist()
    assert torch.allclose(together[1, :short], alone[1], atol=1e-5)
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    assert (theirs[1, :short] - alone[1]).abs().max() > 1e-3, "the padding leaks through GroupNorm there"


def test_silence_surrounds_the_words_when_the_frames_allow_it():
    lexicon = Lexicon()
    roomy = phone_sequence(["a", "cat"], lexicon, INVENTORY, frames=100, min_frames=1)
    assert roomy.phones == ("SIL", "AH", "SIL", "K", "AE", "T", "SIL")
    assert roomy.owners == (-1, 0, -1, 1, 1, 1, -1)
    assert roomy.ids[0] == PHONES.index("[SIL]") and roomy.ids[3] == PHONES.index("K")
    tight = phone_sequence(["a", "cat"], lexicon, INVENTORY, frames=5, min_frames=1)
    assert tight.phones == ("AH", "K", "AE", "T")
    with pytest.raises(InputError, match="too short"):
        phone_sequence(["a", "cat"], lexicon, INVENTORY, frames=3, min_frames=1)


def test_heard_lists_the_most_probable_phones_and_names_silence():
    posteriors = np.zeros(len(PHONES))
    posteriors[PHONES.index("S")] = 0.6
    posteriors[PHONES.index("[SIL]")] = 0.25
    posteriors[PHONES.index("[PAD]")] = 0.1  # not a phone: never reported
    posteriors[PHONES.index("TH")] = 0.05
    assert heard_over(posteriors, INVENTORY) == (("S", 0.6), ("SIL", 0.25), ("TH", 0.05))


def alignment_of(sequence: PhoneSequence, segments) -> FrameAlignment:
    phones = tuple(PhoneGop(pid, a, b, -0.5 * k, 0.1, -1.0, 0, -2.0)
                   for k, (pid, (a, b)) in enumerate(zip(sequence.ids, segments)))
    return FrameAlignment(phones=phones, n_frames=segments[-1][1], score=-10.0, frame_ms=10)


def test_an_unheard_squeezed_reference_word_scored_low_is_an_omission_and_costs_completeness():
    sequence = PhoneSequence.of([("DH", "AH0"), ("K", "AE1", "T")], INVENTORY, with_silence=False)
    # "the" squeezed into 2 frames (10 ms a phone), "cat" 30 frames
    alignment = alignment_of(sequence, [(0, 1), (1, 2), (2, 12), (12, 22), (22, 32)])
    log_probs = np.log(np.full((32, len(PHONES)), 1 / len(PHONES)))
    words = aligned_words(["the", "cat"], sequence, alignment, log_probs, INVENTORY, frame_ms=10)
    assert [(w.start_frame, w.end_frame) for w in words] == [(0, 2), (2, 32)]
    assert words[1].phones[1].phone == "AE" and words[1].phones[1].start_ms == 120
    cat = RecognizedWord("cat", 20, 320, 0.9)
    inputs = head_inputs(words, (None, cat), closed=True, duration_ms=320, frame_ms=10)
    assert inputs.omitted == (True, False)
    request = AssessmentRequest(np.zeros(5120, np.float32), "the cat", flag_sensitivity=0.5)
    assert inputs.phone_owner.tolist() == [0, 0, 1, 1, 1] and inputs.phones.shape == (5, len(PHONE_FEATURES))
    assert [PHONE_CLASSES[i] for i in inputs.phone_ids] == ["DH", "AH", "K", "AE", "T"]
    phone_scores = np.array([0.5, 1.0, 2.0, 0.2, 1.5])
    result = scored_result(request, "cat", words, inputs, (np.array([[3.0, 9.0, 3.0], [4.0, 9.0, 5.0]]),
                           np.array([6.0, 7.0, 8.0, 6.5]), phone_scores), DEFAULT_FLAG_THRESHOLDS, 10, "heads", {})
    the, cat_score = result.words
    assert [p.accuracy for w in result.words for p in w.phones] == phone_scores.tolist(), "the phone head's scores"
    assert the.error_type is WordErrorType.OMISSION and the.accuracy == the.total == 0.0 and the.needs_improvement
    assert the.stress == 9.0, "an unsaid word keeps its stress score, as the experts rate it"
    assert cat_score.error_type is WordErrorType.MISPRONUNCIATION and cat_score.needs_improvement
    assert result.scores.completeness == 5.0 and result.scores.total == 6.5
    # the rule alone is not enough: scores that say the squeezed word was said well keep it, and completeness
    said = scored_result(request, "cat", words, inputs, (np.array([[9.0, 9.0, 9.0], [4.0, 9.0, 5.0]]),
                         np.array([6.0, 7.0, 8.0, 6.5]), phone_scores), DEFAULT_FLAG_THRESHOLDS, 10, "heads", {})
    assert said.words[0].error_type is WordErrorType.NONE and said.words[0].accuracy == 9.0
    assert not said.words[0].needs_improvement and said.scores.completeness == 10.0
    heard_too = head_inputs(words, (RecognizedWord("the", 0, 20), cat), closed=True, duration_ms=320, frame_ms=10)
    assert heard_too.omitted == (False, False)
    assert not any(head_inputs(words, (None, None), closed=False, duration_ms=320, frame_ms=10).omitted)


class Labelled:
    def __init__(self, words, phones=None):
        phones = phones or [((), ())] * len(words)
        self.words = tuple(type("W", (), {"text": t, "accuracy": a, "stress": 10.0, "total": a, "phones": p,
                                          "phones_accuracy": pa})() for (t, a), (p, pa) in zip(words, phones))


def test_training_labels_follow_the_words_they_stand_for():
    utterance = Labelled([("MY", 10.0), ("BROTHER", 4.0), ("IS", 9.0), ("10", 8.0)])
    closed = labelled_targets(["my", "brother", "is", "ten"], utterance)
    assert closed[:, 0].tolist() == [10.0, 4.0, 9.0, 8.0]
    heard = labelled_targets(["my", "brothers", "is", "ten", "now"], utterance)  # a misread word, an extra one
    assert heard[:4, 0].tolist() == [10.0, 4.0, 9.0, 8.0] and np.isnan(heard[4]).all()


def test_finetuning_the_encoder_writes_it_and_points_the_config_at_it(tmp_path):
    from saywell.engine.offline.training import main as train

    folder = tmp_path / "models"
    write_random_models(folder)
    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    shutil.copy(FIXTURES / "brother.wav", corpus / "audio" / "u1.wav")
    text = "MY BROTHER IS TEN YEARS OLD"
    words = [{"text": w, "accuracy": 8.0, "stress": 10.0, "total": 8.0} for w in text.split()]
    (corpus / "labels.jsonl").write_text(json.dumps({"utt": "u1", "speaker": "s1", "text": text, "accuracy": 8,
                                                     "fluency": 8, "prosodic": 8, "total": 8, "words": words}) + "\n")
    before = load_ssl_encoder(NeuralConfig.load(folder).ssl, False).state_dict()
    assert train(["--profile", "neural", "--data", str(corpus), "--model-dir", str(folder), "--steps", "3",
                  "--device", "cpu", "--finetune-encoder", "--encoder-lr", "1e-3"]) == 0
    config = NeuralConfig.load(folder)
    assert config.ssl.path == folder / "ssl-finetuned" and config.trained["finetuned_encoder"]
    after = load_ssl_encoder(config.ssl, False)
    assert isinstance(after, SpeechEncoder) and after.normalize
    changed = [name for name, value in after.state_dict().items() if not torch.equal(value, before[name])]
    assert changed, "the encoder's weights moved"
    assert "fine-tuned end to end" in (folder / "MODEL_CARD.md").read_text()


def heads_items(rng, lengths=(12, 30), ssl_dim=8):
    from saywell.engine.profiles.neural.heads import HeadsItem

    return [HeadsItem(rng.normal(size=(t, ssl_dim)).astype(np.float32), np.array([[0, t // 2], [t // 2, t]]),
                      rng.normal(size=(2, len(WORD_FEATURES))).astype(np.float32),
                      rng.normal(size=len(SENTENCE_FEATURES)).astype(np.float32),
                      rng.normal(size=(2 + k, len(PHONE_FEATURES))).astype(np.float32),
                      rng.integers(0, len(PHONE_CLASSES), 2 + k), np.array([0] + [1] * (1 + k)))
            for k, t in enumerate(lengths)]


def test_an_ensemble_scores_the_mean_of_its_members_and_round_trips(tmp_path):
    from saywell.engine.profiles.neural.heads import (HeadsConfig, HeadsEnsemble, PronunciationHeads, collate,
                                                      load_heads, save_heads)

    batch = collate(heads_items(np.random.default_rng(0)))
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(PronunciationHeads(HeadsConfig(ssl_dim=8)).eval())
    ensemble = HeadsEnsemble(members).eval()
    with torch.no_grad():
        alone = [m(**batch) for m in members]
        scores = ensemble(**batch)
    assert not torch.allclose(alone[0][0], alone[1][0]), "the members differ"
    for part in range(3):  # words, sentence, phones
        assert torch.allclose(scores[part], (alone[0][part] + alone[1][part]) / 2)
    assert scores[2].shape == (2, 3) and bool(((scores[2] >= 0) & (scores[2] <= 2)).all())

    save_heads(ensemble, tmp_path / "heads.pt", {"note": "two"})
    loaded, meta = load_heads(tmp_path / "heads.pt")
    assert len(loaded.members) == 2 and meta == {"note": "two"}
    with torch.no_grad():
        assert torch.equal(loaded(**batch)[0], scores[0])

    # A checkpoint trained on other inputs (an earlier format, other phone features) is refused, saying what to do.
    checkpoint = torch.load(tmp_path / "heads.pt", weights_only=True)
    checkpoint["phone_features"] = checkpoint["phone_features"][:-1]
    torch.save(checkpoint, tmp_path / "other.pt")
    with pytest.raises(EngineError, match="trained on other inputs .* train the heads again"):
        load_heads(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="at least one set of heads"):
        HeadsEnsemble([])


def test_a_batch_of_heads_items_scores_each_as_it_scores_alone():
    from saywell.engine.profiles.neural.heads import HeadsConfig, PronunciationHeads, collate

    items = heads_items(np.random.default_rng(1), lengths=(7, 25, 40))
    torch.manual_seed(3)
    heads = PronunciationHeads(HeadsConfig(ssl_dim=8)).eval()
    with torch.no_grad():
        together = heads(**collate(items))
        for row, item in enumerate(items):
            alone = heads(**collate([item]))
            assert torch.allclose(alone[0][0], together[0][row, :len(item.words)], atol=1e-5)
            assert torch.allclose(alone[1][0], together[1][row], atol=1e-5)
            assert torch.allclose(alone[2][0], together[2][row, :len(item.phones)], atol=1e-5)


def test_phone_targets_are_the_experts_scores_of_the_same_phones():
    from saywell.engine.profiles.neural.training import labelled_phone_targets

    utterance = Labelled([("THE", 9.0), ("CAT", 5.0)], [(("DH", "AH0"), (2.0, 1.5)), (("K", "AA1", "T"), (2.0, 0.5, 2.0))])
    sequence = PhoneSequence.of([("DH", "AH0"), ("K", "AE1", "T")], INVENTORY, with_silence=False)
    alignment = alignment_of(sequence, [(0, 2), (2, 4), (4, 10), (10, 20), (20, 30)])
    log_probs = np.log(np.full((30, len(PHONES)), 1 / len(PHONES)))
    words = aligned_words(["the", "cat"], sequence, alignment, log_probs, INVENTORY, frame_ms=10)
    targets = labelled_phone_targets(words, utterance)
    # "cat" was labelled with other phones (K AA T): no targets for it rather than wrong ones
    assert targets[:2].tolist() == [2.0, 1.5] and np.isnan(targets[2:]).all() and len(targets) == 5


def test_the_training_loss_counts_the_labelled_phones_on_their_0_to_1_scale():
    from saywell.engine.profiles.neural.training import loss_of

    words = torch.full((1, 2, 3), 5.0)
    sentence = torch.full((1, 4), 6.0)
    phones = torch.tensor([[1.0, 2.0, 0.0]])
    unlabelled = torch.full((1, 2, 3), float("nan"))
    phone_targets = torch.tensor([[2.0, float("nan"), 1.0]])  # errors 1 and 1 on 0..2: 0.25 each on 0..1
    assert loss_of(words, sentence, phones, (unlabelled, sentence, phone_targets)).item() == pytest.approx(0.25)
    no_phones = torch.full((1, 3), float("nan"))
    assert loss_of(words, sentence, phones, (unlabelled, sentence, no_phones)).item() == 0.0


def test_neural_training_never_sees_the_confirmation_speakers(tmp_path, monkeypatch):
    """`saywell train --profile neural` leaves the confirmation speakers out of what it trains on, with or without
    a validation fold (whose folds are dealt on the whole corpus)."""
    from saywell.engine.offline.dataset import confirmation_speakers, load_corpus, speaker_folds
    from saywell.engine.offline.training import main as train
    from saywell.engine.profiles.neural import training as neural_training

    (tmp_path / "audio").mkdir()
    rows = []
    for s in range(10):  # fold 0 of the default split holds 2 of these speakers, one a confirmation speaker
        utt = f"u{s}"
        shutil.copy(FIXTURES / "brother.wav", tmp_path / "audio" / f"{utt}.wav")
        rows.append({"utt": utt, "speaker": f"s{s}", "text": "MY BROTHER", "accuracy": s, "fluency": 8,
                     "prosodic": 8, "total": 8, "words": [{"text": w, "accuracy": 8.0, "stress": 10.0, "total": 8.0}
                                                          for w in ("MY", "BROTHER")]})
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = load_corpus(tmp_path)
    held = confirmation_speakers(corpus)
    assert len(held) == 1
    seen: list[set[str]] = []

    async def fake_analyse(engine, utterances, load_audio):
        seen.append({u.speaker for u in utterances})
        return [], ["stopped here"]

    monkeypatch.setattr(neural_training, "neural_engine", lambda args, folder: object())
    monkeypatch.setattr(neural_training, "analyse_corpus", fake_analyse)
    for fold in (None, 1):
        extra = [] if fold is None else ["--validation-fold", str(fold)]
        with pytest.raises(SystemExit, match="no utterance"):
            train(["--profile", "neural", "--data", str(tmp_path), "--model-dir", str(tmp_path / "m")] + extra)
        expected = {u.speaker for u in corpus} - held
        if fold is not None:
            expected -= {u.speaker for u in speaker_folds(corpus, 5, 762)[fold]}
        assert seen[-1] == expected
