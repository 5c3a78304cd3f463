"""The lmm profile with a tiny random Qwen2-Audio and a tiny random Phi-4-multimodal (engine/profiles/lmm/plumbing.py):
LoRA adapters trained with `saywell train --profile lmm` on a corpus made of the test fixtures, then assessed
through create_engine.

The model is tiny and random and the labels invented, so no score here says anything about pronunciation: the
tests check the schema, the constrained decoding that makes every generation an assessment, the strict parser
that refuses anything else, batching, training and the config's rules.
"""
import asyncio
import json
import pathlib
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from saywell.client.cli import main as saywell_cli
from saywell.engine.api import Engine, create_engine
from saywell.engine.language.lexicon import Lexicon, strip_stress
from saywell.engine.offline.dataset import load_audio
from saywell.engine.options import BatchingOptions, EngineOptions
from saywell.engine.profiles.lmm.architectures import Phi4Multimodal
from saywell.engine.profiles.lmm.config import LmmConfig
from saywell.engine.profiles.lmm.constrained import Choice, FreeWord, assessment_program
from saywell.engine.profiles.lmm.plumbing import write_tiny_model
from saywell.engine.profiles.lmm.prompts import phi4_prompt
from saywell.engine.profiles.lmm.stage import load_model
from saywell.engine.profiles.lmm.schema import AssessmentFormatError, parse_assessment, render_target
from saywell.engine.types import AssessmentRequest, EngineError, InputError, WordErrorType

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
TEXTS = {"fox": "the quick brown fox jumps over the lazy dog", "coffee": "I would like a cup of coffee please",
         "brother": "my brother is ten years old"}
LEXICON = Lexicon()


def phones_of(word: str) -> tuple[str, ...]:
    return tuple(strip_stress(p) for p in LEXICON.pronounce(word))


def write_corpus(root: pathlib.Path) -> pathlib.Path:
    """The fixtures in the speechocean762 layout with invented labels (plumbing only), phones included."""
    (root / "audio").mkdir(parents=True)
    rows = []
    for index, (name, text) in enumerate(TEXTS.items()):
        shutil.copy(FIXTURES / f"{name}.wav", root / "audio" / f"{index:04d}.wav")
        words = [{"text": w.upper(), "accuracy": 9 - i % 3, "stress": 10, "total": 8,
                  "phones": list(LEXICON.pronounce(w.lower())), "phones_accuracy": [2] * len(LEXICON.pronounce(w.lower()))}
                 for i, w in enumerate(text.split())]
        rows.append({"utt": f"{index:04d}", "speaker": f"s{index}", "text": text.upper(), "accuracy": 8, "fluency": 9,
                     "prosodic": 8, "total": 8, "completeness": 10, "words": words})
    (root / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def train_tiny(root: pathlib.Path, architecture: str) -> pathlib.Path:
    """A tiny random base model of `architecture` and an adapter trained on the fixture corpus; the model folder.
    The train command is not told the architecture: it reads it from the base model's config.json."""
    write_tiny_model(root / "tiny", architecture=architecture)
    code = saywell_cli(["train", "--profile", "lmm", "--data", str(write_corpus(root / "corpus")), "--model-dir",
                        str(root / "models"), "--base-model", str(root / "tiny" / "base"), "--steps", "20",
                        "--batch-size", "3", "--lr", "3e-3", "--device", "cpu"])
    assert code == 0
    return root / "models"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    return train_tiny(tmp_path_factory.mktemp("lmm"), "qwen2-audio")


@pytest.fixture(scope="module")
def phi4_trained(tmp_path_factory) -> pathlib.Path:
    return train_tiny(tmp_path_factory.mktemp("lmm-phi4"), "phi4-multimodal")


class LiveEngine:
    def __init__(self, options: EngineOptions) -> None:
        self.batches: list[tuple[str, int]] = []
        self.loop = asyncio.new_event_loop()
        self.engine: Engine = create_engine(options, on_batch=lambda stage, size, _s: self.batches.append((stage, size)))
        self.run(self.engine.warm_up())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.engine.close())
        self.loop.close()


def live_engine(model_dir: pathlib.Path) -> LiveEngine:
    return LiveEngine(EngineOptions(profile="lmm", model_dir=str(model_dir), device="cpu",
                                    asr_batching=BatchingOptions(max_batch_size=8, max_wait_ms=200)))


@pytest.fixture(scope="module")
def live(trained):
    engine = live_engine(trained)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def phi4_live(phi4_trained):
    engine = live_engine(phi4_trained)
    yield engine
    engine.close()


ENGINES = ["live", "phi4_live"]  # the Qwen2-Audio and the Phi-4-multimodal engine, for the tests both must pass


def assert_well_formed(result, duration_ms: int) -> None:
    s = result.scores
    assert all(0 <= v <= 10 for v in (s.accuracy, s.fluency, s.prosody, s.total))
    previous_end = 0
    for word in result.words:
        assert re.fullmatch(r"[a-z']+", word.text)
        assert all(0 <= v <= 10 for v in (word.accuracy, word.stress, word.total))
        assert previous_end <= word.start_ms < word.end_ms <= duration_ms
        previous_end = word.end_ms
        assert [p.phone for p in word.phones] == list(phones_of(word.text))
        for phone in word.phones:
            assert 0 <= phone.accuracy <= 2 and word.start_ms <= phone.start_ms < phone.end_ms <= word.end_ms
            assert phone.heard == () or (len(phone.heard) == 1 and phone.heard[0][1] == 1.0)


def spell(program, text: str) -> bool:
    """Whether the constrained program can write exactly `text` (driven at the level of characters)."""
    position, slot = 0, next(program)
    try:
        while True:
            if isinstance(slot, Choice):
                matches = [i for i, o in enumerate(slot.options) if text.startswith(o, position)]
                if len(matches) != 1:
                    return False
                position += len(slot.options[matches[0]])
                slot = program.send(matches[0])
            else:
                word = re.match(r"[a-z']+", text[position:]).group()
                position += len(word)
                if not text.startswith(slot.suffix, position):
                    return False
                position += len(slot.suffix)
                slot = program.send(word)
    except StopIteration:
        return position == len(text)


SCORES = {"accuracy": 7.4, "fluency": 9, "prosody": 8, "total": 7, "completeness": 10}
WORDS = [("my", (8, 10, 8), "none", [("M", 2, None), ("AY", 1.3, "AA")]),
         ("brother", (3, 10, 4), "mispronunciation", [(p, 1, None) for p in phones_of("brother")])]


@pytest.mark.parametrize("closed", [True, False])
def test_the_constrained_program_writes_exactly_the_training_targets_text(closed):
    target = render_target(SCORES, WORDS, closed)
    reference = ("my", "brother") if closed else None
    assert spell(assessment_program(reference, phones_of, max_words=8), target)
    assert parse_assessment(target, reference).words[1].error is WordErrorType.MISPRONUNCIATION
    other = target.replace('"AY",1.3', '"AY",1.35')  # one decimal too many: outside the schema
    assert not spell(assessment_program(reference, phones_of, max_words=8), other)


def test_the_parser_clamps_to_the_scales_and_refuses_anything_outside_the_schema():
    good = json.loads(render_target(SCORES, WORDS, closed=False))
    good["scores"]["total"], good["words"][0]["accuracy"], good["words"][0]["phones"][0][1] = 12, -3, 2.7
    parsed = parse_assessment(json.dumps(good), None)
    assert (parsed.scores["total"], parsed.words[0].accuracy, parsed.words[0].phones[0].score) == (10, 0, 2)
    assert parsed.words[0].phones[1].heard == "AA" and parsed.words[0].phones[0].heard is None
    bad = {"not json": '{"scores":', "a missing key": json.dumps({"scores": good["scores"]}),
           "an unknown phone": json.dumps(good).replace('"AY"', '"QQ"'),
           "a string score": json.dumps(good).replace('"fluency": 9', '"fluency": "9"'),
           "omission in open mode": json.dumps(good).replace('"none"', '"omission"')}
    for what, text in bad.items():
        with pytest.raises(AssessmentFormatError):
            parse_assessment(text, None)
    with pytest.raises(AssessmentFormatError, match="reference words"):  # closed mode: the reference, in order
        parse_assessment(render_target(SCORES, WORDS, closed=True), ("brother", "my"))
    assert issubclass(AssessmentFormatError, EngineError) and not issubclass(AssessmentFormatError, InputError)


def test_the_train_command_writes_the_adapter_lmm_json_and_a_model_card(trained):
    config = json.loads((trained / "lmm.json").read_text())
    assert config["adapter"] == "adapter" and config["trained"]["examples"] == 6 and config["trained"]["steps"] == 20
    assert (trained / "adapter" / "adapter_config.json").is_file()
    card = (trained / "MODEL_CARD.md").read_text()
    assert "prove the plumbing only" in card and "3 utterances" in card
    assert config["trained"]["last_loss"] < config["trained"]["first_loss"], "training lowers the loss"


@pytest.mark.parametrize("engine", ENGINES)
def test_closed_mode_gives_a_complete_assessment_of_the_reference_words(engine, request):
    live = request.getfixturevalue(engine)
    audio = load_audio(FIXTURES / "fox.wav")
    result = live.run(live.engine.assess(AssessmentRequest(audio, reference_text=TEXTS["fox"])))
    assert [w.text for w in result.words] == TEXTS["fox"].split()
    assert_well_formed(result, len(audio) // 16)
    assert 0 <= result.scores.completeness <= 10 and result.scorer == "constrained"
    assert set(live.engine.info.model_versions) == {"base_model", "processor", "adapter"}


def test_open_mode_writes_its_own_words_each_with_its_lexicon_phones(live, trained):
    """The trained adapter learned to end early (its open targets are short); the untrained base model writes
    words until the budget: either way the result is well formed."""
    audio = load_audio(FIXTURES / "brother.wav")
    untrained = LiveEngine(EngineOptions(profile="lmm", model_dir=str(trained.parent / "tiny"), device="cpu"))
    try:
        results = [engine.run(engine.engine.assess(AssessmentRequest(audio))) for engine in (live, untrained)]
    finally:
        untrained.close()
    assert results[1].words, "the untrained model writes words"
    for result in results:
        assert result.scores.completeness is None and result.transcript == " ".join(w.text for w in result.words)
        assert_well_formed(result, len(audio) // 16)
        assert all(w.error_type is not WordErrorType.OMISSION for w in result.words)


def test_the_free_scorer_refuses_what_the_model_writes_on_its_own(live):
    """Unconstrained, a tiny model writes no JSON: the utterance fails with the format error, no scores."""
    request = AssessmentRequest(load_audio(FIXTURES / "brother.wav"), TEXTS["brother"], scorer="free")
    with pytest.raises(AssessmentFormatError):
        live.run(live.engine.assess(request))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_batch_gives_each_utterance_what_it_gets_alone(engine, request):
    live = request.getfixturevalue(engine)
    requests = [AssessmentRequest(load_audio(FIXTURES / "fox.wav"), TEXTS["fox"]),
                AssessmentRequest(load_audio(FIXTURES / "brother.wav")),
                AssessmentRequest(load_audio(FIXTURES / "coffee.wav"), TEXTS["coffee"])]
    alone = [live.run(live.engine.assess(r)) for r in requests]
    live.batches.clear()

    async def together():
        return await asyncio.gather(*(live.engine.assess(r) for r in requests))

    batched = live.run(together())
    assert max(size for stage, size in live.batches if stage == "lmm") > 1
    for one, many in zip(alone, batched):
        assert (one.scores, one.words, one.transcript) == (many.scores, many.words, many.transcript)


def test_no_interim_words_and_the_capabilities_say_so(live):
    assert live.run(live.engine.provisional_words(AssessmentRequest(np.zeros(16000, np.float32)))) == ()
    capabilities = live.engine.info.capabilities
    assert not capabilities.interim_words and capabilities.phone_diagnosis and capabilities.assessment
    with pytest.raises(InputError):
        live.run(live.engine.assess(AssessmentRequest(np.zeros(16000, np.float32), reference_text="?!")))


@pytest.mark.parametrize("change, message", [({"base_model": "Qwen/Qwen2-Audio-7B-Instruct"}, "--allow-download"),
                                             ({"architecture": "gemma3n"}, "not supported"),
                                             ({"base_model": "../nowhere/at/all"}, "neither a folder")])
def test_the_config_refuses_hub_ids_without_downloads_and_unknown_architectures(tmp_path, change, message):
    write_tiny_model(tmp_path)
    config = json.loads((tmp_path / "lmm.json").read_text())
    (tmp_path / "lmm.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(EngineError, match=message):
        create_engine(EngineOptions(profile="lmm", model_dir=str(tmp_path), device="cpu"))


def test_phi4_the_train_command_reads_the_architecture_and_puts_lora_on_the_text_model_only(phi4_trained):
    config = json.loads((phi4_trained / "lmm.json").read_text())
    assert config["architecture"] == config["trained"]["architecture"] == "phi4-multimodal"
    assert config["trained"]["last_loss"] < config["trained"]["first_loss"], "training lowers the loss"
    adapter = json.loads((phi4_trained / "adapter" / "adapter_config.json").read_text())
    assert adapter["target_modules"] == Phi4Multimodal.lora_targets
    with safe_open(phi4_trained / "adapter" / "adapter_model.safetensors", "pt") as weights:
        names = list(weights.keys())
    targets = {re.sub(r"\.lora_[AB]\.weight$", "", name).removeprefix("base_model.model.") for name in names}
    # two text layers x (qkv, o, gate_up, down); nothing in the audio or the vision encoder
    assert targets == {f"model.layers.{i}.{m}" for i in range(2) for m in
                       ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")}


def test_phi4_the_prompt_is_its_chat_layout_and_the_processor_expands_the_audio_token(phi4_live):
    loaded = phi4_live.engine.stage.load()
    prompt = loaded.arch.prompt(("my", "brother"), loaded.processor)
    assert prompt == phi4_prompt(("my", "brother"), "<|endoftext11|>")
    assert prompt.startswith("<|system|>") and prompt.endswith("<|end|><|assistant|>")
    inputs = loaded.processor(text=[prompt], audio=[load_audio(FIXTURES / "brother.wav")], sampling_rate=16000,
                              return_tensors="pt")
    audio_tokens = int((inputs["input_ids"] == loaded.processor.audio_token_id).sum())
    assert audio_tokens == int(inputs["audio_embed_sizes"][0]) > 0 and inputs["audio_input_features"].shape[-1] == 80
    assert loaded.end_token_id == loaded.processor.tokenizer.convert_tokens_to_ids("<|end|>")


def test_phi4_open_mode_writes_its_own_words_each_with_its_lexicon_phones(phi4_live):
    audio = load_audio(FIXTURES / "brother.wav")
    result = phi4_live.run(phi4_live.engine.assess(AssessmentRequest(audio)))
    assert result.words and result.scores.completeness is None and result.scorer == "constrained"
    assert result.transcript == " ".join(w.text for w in result.words)
    assert_well_formed(result, len(audio) // 16)
    assert all(w.error_type is not WordErrorType.OMISSION for w in result.words)


def test_an_architecture_that_is_not_the_base_models_is_refused_at_load(tmp_path):
    write_tiny_model(tmp_path)  # a Qwen2-Audio folder
    config = json.loads((tmp_path / "lmm.json").read_text())
    (tmp_path / "lmm.json").write_text(json.dumps({**config, "architecture": "phi4-multimodal"}))
    with pytest.raises(EngineError, match="'qwen2_audio' model, not phi4-multimodal"):
        load_model(LmmConfig.load(tmp_path), torch.device("cpu"), False)


def test_phi4_the_base_models_speech_lora_is_merged_before_the_adapter(tmp_path):
    """Microsoft's Phi-4 carries its speech adapter in `speech-lora/` (transformers' conversion writes it there):
    the profile merges it, and it changes the text model's projections only."""
    from peft import LoraConfig, get_peft_model
    from transformers import Phi4MultimodalForCausalLM

    write_tiny_model(tmp_path, architecture="phi4-multimodal")
    config = LmmConfig.load(tmp_path)
    plain = dict(load_model(config, torch.device("cpu"), False).model.named_parameters())
    speech = get_peft_model(Phi4MultimodalForCausalLM.from_pretrained(tmp_path / "base"), LoraConfig(
        r=2, lora_alpha=4, target_modules=Phi4Multimodal.lora_targets, init_lora_weights=False))
    speech.save_pretrained(tmp_path / "base" / "speech-lora")
    merged = dict(load_model(config, torch.device("cpu"), False).model.named_parameters())
    assert set(plain) == set(merged)
    changed = {name for name in plain if not torch.equal(plain[name], merged[name])}
    assert changed and all(re.fullmatch(r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight", n) for n in changed)
