"""Engine options: one frozen dataclass per concern, every default documented here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchingOptions:
    """Micro-batching of one stage across all concurrent streams."""

    max_batch_size: int = 4  # items run together; 1 turns batching off
    max_wait_ms: float = 5.0  # how long a lone item waits for companions
    max_queue_size: int = 64  # waiting items; beyond it submit() raises OverloadedError
    workers: int = 1  # threads running batches of this stage in parallel

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class AsrOptions:
    """Whisper through faster-whisper (CTranslate2)."""

    model: str = "tiny.en"  # packaged name ("tiny.en", "base"), a local CTranslate2 folder, or a hub id
    device: str = "cpu"  # CTranslate2 device: "cpu" or "cuda" (a torch profile on CUDA puts its ASR there too)
    compute_type: str = "int8"  # on CUDA: "float16" (or "int8_float16")
    cpu_threads: int = 1  # per model instance; stages run in parallel on the other core
    # Greedy on a 10 s window matched beam 5 on Whisper's 30 s window in WER (22.8 vs 23.3% on 250 validation
    # utterances) at under a third of the cost; beam search on a short window loops more (35.8%).
    beam_size: int = 1  # final decodes
    partial_beam_size: int = 1  # interim decodes while the learner speaks
    window_s: float = 10.0  # encoder window: the audio plus silence up to this (>= 5 s of it); 0: 30 s
    partial_window_s: float = 5.0  # interim decodes: the audio plus 5 s (WER 25.9 vs 22.8%, a third cheaper)
    allow_download: bool = False  # hub ids need the network; packaged names never do


TARGET_ASR_THREADS = 2  # see EngineOptions.target_asr
INTERIM_WORDS = ("frames", "graph")  # see EngineOptions.interim_words


@dataclass(frozen=True)
class TritonOptions:
    """The `triton` backend: a Triton Inference Server (gRPC) that serves a profile's model stages, shared by many
    saywell replicas (engine/backends/triton/, deploy/triton/README.md)."""

    url: str = ""  # HOST:PORT of Triton's gRPC endpoint; required with backend "triton"
    # Per request to Triton (and per start-up check): a request over it fails its utterances as UNAVAILABLE.
    timeout_s: float = 10.0
    ssl: bool = False  # TLS to Triton; the three PEM files below are optional (system roots when unset)
    root_certificates: str = ""  # PEM CA bundle that signed Triton's certificate
    private_key: str = ""  # PEM client key, for mutual TLS
    certificate_chain: str = ""  # PEM client certificate chain, for mutual TLS

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"triton timeout_s must be > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class EarlyAnalysisOptions:
    """Work an utterance handle starts before the endpoint, so little is left when the utterance ends."""

    # Start the final assessment when the learner pauses rather than at the endpoint; if speech resumes the
    # work is dropped. Skipped while more than max_backlog urgent items wait in the engine, so under load no
    # CPU goes to guesses.
    speculative_finals: bool = True
    max_backlog: int = 4
    # Open mode: shorter stretches are left for the next cut, since each segment pays Whisper's fixed cost.
    min_segment_ms: int = 1500

    def __post_init__(self) -> None:
        if self.max_backlog < 0:
            raise ValueError(f"max_backlog must be >= 0, got {self.max_backlog}")
        if self.min_segment_ms < 100:
            raise ValueError(f"min_segment_ms must be >= 100, got {self.min_segment_ms}")


@dataclass(frozen=True)
class EngineOptions:
    profile: str = "cpu"  # a name in saywell.engine.registry.PROFILES
    backend: str = "local"  # where the profile's models run; each profile says which backends it has
    device: str = "auto"  # torch device of the profile's models: "auto" (CUDA when present), "cuda", "cpu"
    model_dir: str = ""  # the profile's model folder; "": its packaged default (profiles without one ignore it)
    allow_download: bool = False  # hub ids in the profile's model config may download (needs the network)
    asr: AsrOptions = field(default_factory=AsrOptions)
    # Open mode's target ASR (MultiPA's design): its words are the ones assessed, and where the recognising ASR
    # (`asr`) disagrees with them is evidence of unclear speech. None: the recognised words are assessed.
    # Measured in cross-validation: word total PCC 0.428 -> 0.440, sentence total 0.777 -> 0.783. Two threads:
    # it runs on segments and finals, when interim decodes yield; 374 -> 228 ms per utterance, same output.
    target_asr: AsrOptions | None = field(
        default_factory=lambda: AsrOptions(model="base", cpu_threads=TARGET_ASR_THREADS))
    default_scorer: str = "trained"  # falls back to "baseline" when the trained checkpoints are missing
    asr_batching: BatchingOptions = field(default_factory=BatchingOptions)
    align_batching: BatchingOptions = field(default_factory=BatchingOptions)
    loop_batching: BatchingOptions = field(default_factory=BatchingOptions)
    # pocketsphinx (alignment, phone loop) in worker processes: it holds the GIL while it decodes
    aligner_processes: bool = True
    score_batching: BatchingOptions = field(default_factory=lambda: BatchingOptions(max_batch_size=8))
    early: EarlyAnalysisOptions = field(default_factory=EarlyAnalysisOptions)
    # How a profile scores interim words while the learner speaks: "frames", from the recogniser's own outputs
    # alone when the profile has such a model (the cpu profile's frame-word trees: the decode is the whole cost),
    # or "graph", through the same stages as the final (the cpu profile: also the phone loop and the alignment).
    interim_words: str = "frames"
    triton: TritonOptions = field(default_factory=TritonOptions)  # backend "triton" only

    def __post_init__(self) -> None:
        if self.interim_words not in INTERIM_WORDS:
            raise ValueError(f"interim_words must be one of {', '.join(INTERIM_WORDS)}, got {self.interim_words!r}")


def with_target_asr(options: EngineOptions, model: str) -> EngineOptions:
    """`options` with open mode's target ASR swapped for `model` ("": none, the recognised words are assessed),
    decoding like the recogniser but on TARGET_ASR_THREADS threads."""
    target = dataclasses.replace(options.asr, model=model, cpu_threads=TARGET_ASR_THREADS) if model else None
    return dataclasses.replace(options, target_asr=target)

