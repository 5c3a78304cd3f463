"""Speech recognition with word timestamps: Whisper through faster-whisper, as a batch stage."""
from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.language.text import normalize_words
from saywell.engine.options import AsrOptions
from saywell.engine.types import EngineError, RecognizedWord, Transcript
from saywell.engine.weights import ModelNotFoundError, model_version, whisper_model_dir

MIN_AUDIO_SAMPLES = 1600  # 0.1 s: Whisper has nothing to say about less
ENCODER_FRAME_MS = 20  # one encoder frame: two 10 ms log-mel frames (the second convolution's stride)
MIN_PADDING_FRAMES = 500  # 5 s of silence after the audio: with less, Whisper tends to loop
WINDOW_STEP_FRAMES = 100  # encoder windows are whole seconds
TOKENS_BASE, TOKENS_PER_SECOND = 12, 10  # generous: timestamps and punctuation are tokens too
# Shorter audio is not sent to a target ASR: a stretch this short holds a word or two, and on near-silence
# Whisper base hallucinates and retries at higher temperatures (measured: 1.5 s for 0.13 s of audio). The
# recognising ASR's words stand in. Every training utterance is longer (1.6 s at least).
MIN_TARGET_SAMPLES = 16000
MAX_WORDS_PER_SECOND = 7.0  # faster than any speech: the rest is a Whisper repetition loop
# A word said more than this many times in a row is a Whisper loop ("the the the the ...", "1 1 1 1 ..."): 19 of
# the 2,500 training utterances' open-mode tiny.en transcripts (session 12's neural evaluation) hold one.
MAX_REPEATS = 2
log = logging.getLogger(__name__)


def plausible(transcript: Transcript, duration_ms: int) -> tuple[RecognizedWord, ...]:
    """Recognised words the audio can hold: Whisper sometimes loops on a phrase past the end of the speech."""
    words = [w for w in transcript.words if w.start_ms < duration_ms]
    return tuple(words[:max(int(duration_ms / 1000 * MAX_WORDS_PER_SECOND), 1)])


def without_loops(words: Sequence[RecognizedWord]) -> tuple[RecognizedWord, ...]:
    """`words` without the repeats past MAX_REPEATS of a word said again and again in a row (case and
    punctuation aside): "very very very very" keeps "very very"."""
    kept: list[RecognizedWord] = []
    run, previous = 0, None
    for word in words:
        key = normalize_words(word.text)
        run = run + 1 if key and key == previous else 1
        previous = key
        if run <= MAX_REPEATS:
            kept.append(word)
    return tuple(kept)


def plausible_words(transcript: Transcript, duration_ms: int) -> list[str]:
    return [w.text for w in plausible(transcript, duration_ms)]


@dataclass(frozen=True)
class AsrRequest:
    audio: np.ndarray  # 16 kHz mono float32
    partial: bool = False  # interim decode: greedy, cheaper
    with_encoder: bool = False  # also return the encoder frames (acoustic features for the trained scorer)
    encoder_only: bool = False  # only the encoder frames: no decoding


class WhisperAsr:
    """Stage `run_batch(requests) -> transcripts`; the model loads on first use and is shared by threads."""

    name = "asr"

    def __init__(self, options: AsrOptions = AsrOptions(), name: str = "asr") -> None:
        self.options = options
        self.name = name  # the stage's name in metrics and thread names
        self._model = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"whisper-{self.options.model} ({model_version(self.options.model)})"

    def load(self):
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel  # heavy import, deferred

                local = whisper_model_dir(self.options.model)
                if local is None and not self.options.allow_download:
                    raise ModelNotFoundError(
                        f"Whisper model {self.options.model!r} is not packaged and downloads are off; "
                        "pass a local CTranslate2 folder or enable allow_download")
                model = WhisperModel(
                    str(local) if local else self.options.model, device=self.options.device,
                    compute_type=self.options.compute_type, cpu_threads=self.options.cpu_threads,
                    local_files_only=local is not None or not self.options.allow_download)
                if self.options.window_s > 0 and self.options.partial_window_s > 0:
                    shorten_continuation_windows(model, min(self.options.window_s, self.options.partial_window_s))
                self._model = model
            return self._model

    def close(self) -> None:
        with self._lock:
            self._model = None

    def run_batch(self, items: Sequence[AsrRequest]) -> list[Transcript | Exception]:
        """Items whose encoder windows have the same length are encoded in one call; decoding is per item."""
        model = self.load()
        mels = {i: log_mel(model, item.audio) for i, item in enumerate(items) if len(item.audio) >= MIN_AUDIO_SAMPLES}
        try:
            encoded = self._encode_together(model, items, mels)
        except Exception:  # noqa: BLE001 - each item then encodes (and fails, if it must) on its own
            log.exception("batched encoding failed; encoding items one by one")
            encoded = {}
        results: list[Transcript | Exception] = []
        for index, item in enumerate(items):
            try:
                results.append(self._transcribe(model, item, mels.get(index), encoded.get(index)))
            except EngineError as exc:
                results.append(exc)
            except Exception as exc:  # a decoder failure must only fail its own utterance
                results.append(EngineError(f"ASR failed: {type(exc).__name__}: {exc}"))
        return results

    def _window_s(self, item: AsrRequest) -> float:
        return self.options.partial_window_s if item.partial else self.options.window_s

    def _encode_together(self, model, items: Sequence[AsrRequest], mels: dict[int, np.ndarray]) -> dict[int, object]:
        """Encoder outputs of the items that share a window length with another item, by item index."""
        windows = {index: encoder_window(model, mel, self._window_s(items[index]))
                   for index, mel in mels.items() if not items[index].encoder_only}
        groups: dict[int, list[int]] = {}
        for index, window in windows.items():
            groups.setdefault(window.shape[-1], []).append(index)
        encoded: dict[int, object] = {}
        for indices in groups.values():
            if len(indices) < 2:
                continue
            import ctranslate2

            states = np.array(model.encode(np.ascontiguousarray(np.stack([windows[i] for i in indices]))))
            for row, index in enumerate(indices):
                encoded[index] = ctranslate2.StorageView.from_array(np.ascontiguousarray(states[row:row + 1]))
        return encoded

    def _transcribe(self, model, item: AsrRequest, mel: np.ndarray | None, encoded=None) -> Transcript:
        if mel is None:  # shorter than MIN_AUDIO_SAMPLES
            return Transcript(text="", words=(), encoder=np.zeros((0, 0), np.float32) if item.with_encoder else None)
        if item.encoder_only:
            return Transcript(text="", words=(), encoder=mel_encoder_frames(model, mel))
        beam = self.options.partial_beam_size if item.partial else self.options.beam_size
        segments = decode_segments(model, mel, beam, self._window_s(item), encoded)
        texts: list[str] = []
        words: list[RecognizedWord] = []
        for segment in segments:
            texts.append(segment.text.strip())
            for word in segment.words or ():
                words.extend(_split_normalized(word.word, word.start, word.end, word.probability))
        encoder = mel_encoder_frames(model, mel) if item.with_encoder else None
        return Transcript(text=" ".join(t for t in texts if t), words=tuple(words), encoder=encoder)


def max_new_tokens(audio_s: float) -> int:
    """Tokens a decode may produce: speech is ~4 tokens a second; more is a repetition loop, which would
    otherwise run to Whisper's 448-token limit (over a second of CPU on a short window)."""
    return int(TOKENS_BASE + TOKENS_PER_SECOND * audio_s)


@functools.lru_cache(maxsize=1)
def _transcribe_defaults() -> dict:
    """faster-whisper's own defaults for `WhisperModel.transcribe`, read once."""
    import inspect

    from faster_whisper import WhisperModel

    return {name: p.default for name, p in inspect.signature(WhisperModel.transcribe).parameters.items()
            if p.default is not inspect.Parameter.empty}


def transcription_options(model, beam_size: int, audio_s: float = 30.0):
    """faster-whisper's own defaults for `transcribe`, with ours on top: English, greedy fallback-free, words."""
    from faster_whisper.transcribe import TranscriptionOptions

    defaults = _transcribe_defaults()
    # no_speech_threshold off: the VAD already decided this is speech, and Whisper's no-speech guess on short
    # stretches that start in silence dropped whole sentences (p(no speech) 0.92 on "my brother is ten").
    ours = dict(beam_size=beam_size, temperatures=[0.0], condition_on_previous_text=False, word_timestamps=True,
                without_timestamps=False, clip_timestamps="0", multilingual=False, no_speech_threshold=None,
                max_new_tokens=max_new_tokens(audio_s))
    names = [f.name for f in dataclasses.fields(TranscriptionOptions)]
    return TranscriptionOptions(**{name: ours[name] if name in ours else defaults[name] for name in names})


def encoder_window(model, mel: np.ndarray, window_s: float) -> np.ndarray:
    """The log-mel input padded with silence to the encoder window (see decode_segments), C-contiguous.

    Windows are whole multiples of WINDOW_STEP_FRAMES, so that items of similar length share a window length
    and can be encoded in one batch.
    """
    frames = mel.shape[-1]
    full = model.feature_extractor.nb_max_frames
    if window_s <= 0:
        window = full
    else:
        wanted = max(int(window_s * 100), frames + MIN_PADDING_FRAMES)
        window = min(full, -(-wanted // WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES)
    return np.ascontiguousarray(np.pad(mel, ((0, 0), (0, max(window - frames, 0))))[:, :max(window, 1)])


def shorten_continuation_windows(model, window_s: float) -> None:
    """Make the decode's later passes encode a short window too, not Whisper's 30 s.

    When a decode stops before the end of the audio without closing on a single timestamp, faster-whisper
    decodes the rest in another pass, encoding it padded to 30 s: 6-8x the cost of the first pass's window
    (tiny.en ~0.5 s, base ~0.8 s more on this CPU). That happened to 20 of 423 decodes in a 180 s benchmark
    run: the tail of the final latency. The model's `encode` is wrapped to cut such 30 s inputs to the rest of
    the audio plus `window_s` (at least MIN_PADDING_FRAMES) of silence, like the first pass."""
    encode_full = model.encode
    full = model.feature_extractor.nb_max_frames

    def encode(features: np.ndarray):
        return encode_full(continuation_window(features, full, window_s))

    model.encode = encode


def continuation_window(features: np.ndarray, full: int, window_s: float) -> np.ndarray:
    """`features` cut to its content plus padding (see shorten_continuation_windows) when it is a whole 30 s
    input ending in zero padding; anything else is returned as is."""
    if features.shape[-1] != full:
        return features
    columns = np.flatnonzero(np.any(features.reshape(-1, full) != 0, axis=0))
    content = int(columns[-1]) + 1 if len(columns) else 0
    wanted = max(int(window_s * 100), content + MIN_PADDING_FRAMES)
    window = min(full, -(-wanted // WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES)
    return np.ascontiguousarray(features[..., :window]) if window < full else features


def decode_segments(model, mel: np.ndarray, beam_size: int, window_s: float, encoded=None) -> list:
    """Whisper's segments with word timestamps, the encoder run on a window of `window_s` instead of 30 s.

    Whisper always sees 30 s windows; faster-whisper pads short audio to that. Encoding only the audio plus
    enough silence to reach `window_s` (at least 5 s of it) costs a fraction of that. Unpadded input makes the
    decoder loop; measured on 250 validation utterances, greedy decoding on a 10 s window matches beam 5 on
    30 s (WER 22.8 vs 23.3%) at under a third of the cost (see BENCHMARKS.md). `window_s` 0 keeps 30 s.
    `encoded`: the encoder output of that window, when it was computed in a batch with other audio.
    """
    from faster_whisper.tokenizer import Tokenizer

    if encoded is None:
        encoded = model.encode(encoder_window(model, mel, window_s))
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    options = transcription_options(model, beam_size, mel.shape[-1] / 100)
    return list(model.generate_segments(mel, tokenizer, options, False, encoder_output=encoded))


def log_mel(model, audio: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features of 16 kHz audio, unpadded, C-contiguous (100 frames a second)."""
    return np.ascontiguousarray(model.feature_extractor(np.ascontiguousarray(audio, dtype=np.float32)))


def mel_encoder_frames(model, mel: np.ndarray) -> np.ndarray:
    """Encoder states over the unpadded log-mel input: ~10x cheaper than Whisper's 30 s padding."""
    return np.array(model.encode(mel))[0].astype(np.float32)


def encoder_frames(model, audio: np.ndarray) -> np.ndarray:
    """Encoder states of 16 kHz audio (the acoustic features of the trained scorer)."""
    return mel_encoder_frames(model, log_mel(model, audio))


ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "etc", "mt"})


def ends_sentence(raw: str) -> bool:
    """Whisper closed a sentence after this token-word: a full stop (not an abbreviation's, not an ellipsis, which
    marks trailing off), a question or an exclamation mark."""
    token = raw.strip().rstrip("\"')")
    if token.endswith(("?", "!")):
        return True
    return token.endswith(".") and not token.endswith("..") and token[:-1].lower() not in ABBREVIATIONS


def _split_normalized(raw: str, start_s: float, end_s: float, probability: float) -> list[RecognizedWord]:
    """One Whisper token-word may normalise to several words ("1990"); they share its span evenly."""
    parts = normalize_words(raw)
    if not parts:
        return []
    start_ms, end_ms = int(round(start_s * 1000)), int(round(end_s * 1000))
    step = max(end_ms - start_ms, 0) / len(parts)
    closes = ends_sentence(raw)
    return [RecognizedWord(text=p, start_ms=int(start_ms + i * step), end_ms=int(start_ms + (i + 1) * step),
                           probability=float(probability), ends_sentence=closes and i == len(parts) - 1)
            for i, p in enumerate(parts)]
