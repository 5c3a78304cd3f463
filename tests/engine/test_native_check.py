"""The native-speaker check: clips cut out of hash-checked archives, each assessed in both modes under each
condition, and the top band judged (no network here: the archives are built by the test)."""
import asyncio
import hashlib
import io
import tarfile

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.offline import native_check
from saywell.engine.offline.native_check import Clip, fetch, in_top_band, load_clips, run, summarize
from saywell.engine.types import SentenceScores, UtteranceResult, WordErrorType, WordScore


def build_archive(path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture
def clips(tmp_path, monkeypatch):
    tone = (0.2 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    raw = (tone * 32767).astype("<i2").tobytes()
    sha = build_archive(tmp_path / "speech.tar.gz", {"speech/a.wav": wav_bytes(tone), "speech/b.raw": raw})
    archive = ("speech.tar.gz", "https://example.invalid/speech.tar.gz", sha)
    chosen = (Clip("read-a", "read", archive, "speech/a.wav", "hello there friend"),
              Clip("command-b", "command", archive, "speech/b.raw", "go forward"))
    monkeypatch.setattr(native_check, "CLIPS", chosen)
    return tmp_path, tone


def test_fetch_cuts_each_clip_out_of_its_checked_archive_as_16_khz_wav(clips):
    cache, tone = clips
    fetch(cache)  # the archive is already in the cache: nothing is downloaded
    loaded = dict((clip.name, audio) for clip, audio in load_clips(cache))
    assert set(loaded) == {"read-a", "command-b"}
    for audio in loaded.values():
        np.testing.assert_allclose(audio, tone, atol=2e-4)


def test_an_archive_whose_hash_differs_is_refused(clips):
    cache, _ = clips
    (cache / "speech.tar.gz").write_bytes((cache / "speech.tar.gz").read_bytes() + b"tampered")
    with pytest.raises(SystemExit, match="SHA-256 mismatch"):
        fetch(cache)


def test_missing_clips_say_how_to_get_them(tmp_path, clips):
    with pytest.raises(SystemExit, match="run with --fetch"):
        load_clips(tmp_path / "empty")


def result(accuracy: float, fluency: float, flagged: bool = False) -> UtteranceResult:
    word = WordScore("go", 0, 300, 9.5, 10.0, 9.5, WordErrorType.NONE, flagged)
    return UtteranceResult("go", "", SentenceScores(accuracy, fluency, 9.0, 9.0, None), (word,), "trained", {})


def test_the_top_band_needs_accuracy_9_fluency_8_5_and_no_flag():
    assert in_top_band(result(9.0, 8.5))
    assert not in_top_band(result(8.99, 9.5))
    assert not in_top_band(result(9.5, 8.4))
    assert not in_top_band(result(9.5, 9.5, flagged=True))


def test_each_clip_is_assessed_in_both_modes_under_each_condition(clips, monkeypatch):
    cache, _ = clips
    fetch(cache)
    requests = []

    class Engine:
        def start(self):
            pass

        async def close(self):
            pass

        async def assess(self, request):
            requests.append(request)
            return result(9.2 if request.reference_text else 8.7, 9.0)

    monkeypatch.setattr("saywell.engine.api.create_engine", lambda options: Engine())
    rows = asyncio.run(run(None, load_clips(cache), ["clean", "telephone"], ["open", "closed"]))
    assert len(rows) == len(requests) == 2 * 2 * 2
    assert [r.reference_text for r in requests[:4]] == ["", "hello there friend", "", "go forward"]
    assert not np.allclose(requests[0].audio, requests[4].audio)  # the telephone's copy differs from the clean
    summary = summarize(rows)
    assert summary["clean/closed"] == {"clips": 2, "top_band": 2, "flagged_words": 0, "accuracy_min": 9.2,
                                       "accuracy_mean": 9.2, "fluency_min": 9.0, "fluency_mean": 9.0}
    assert summary["telephone/open"]["top_band"] == 0
