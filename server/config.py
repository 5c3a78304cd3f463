"""Server configuration: every limit in one dataclass, set by CLI flags or SAYWELL_* environment variables."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

# Secrets travel only by environment variable: a flag would show them in `ps` and shell history.
ENV_ONLY = {"env_only": True}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9464  # Prometheus /metrics over HTTP; 0 turns it off
    max_concurrent_streams: int = 8  # more are refused with RESOURCE_EXHAUSTED
    max_message_bytes: int = 4 * 1024 * 1024
    max_stream_ms: int = 30 * 60 * 1000
    max_utterance_ms: int = 20_000
    max_reference_text_chars: int = 2_000
    # A silent client would hold its slot for ever: a stream ends with DEADLINE_EXCEEDED when its config has not
    # come config_timeout_s after it opened, or when no audio or end_of_utterance came for idle_timeout_s (0: no
    # idle limit).
    config_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    # Request messages a stream may send per second, averaged over 10 s (so a burst of 10 times this passes); more
    # end the stream with RESOURCE_EXHAUSTED. Each message costs the server ~60 us of CPU however little audio it
    # holds: 1-byte messages would take two cores per stream. 0: no limit.
    max_messages_per_second: int = 200
    # Finals a stream may have in flight: with this many, the server reads no more of the stream until the oldest
    # is delivered (HTTP/2 flow control then slows the sender), so a client sending faster than real time cannot
    # queue up the engine ahead of the other streams.
    max_pending_finals_per_stream: int = 2
    # New speech needed before another interim decode, with one stream open; with N open, each stream waits
    # N^interim_step_growth times this (N times by default), so interim decodes give way to finals as streams are
    # added. Learner speech,
    # one stream, 180 s: 400 ms gave p95 final 342 ms (more decodes, so more cuts, so less left at the
    # endpoint) against 870 ms at 700 ms. At two streams (ramp, 45 s a stage): a fixed 400 ms gave p95 2.8 s;
    # N times it 0.86-2.3 s over four runs at 0.73-0.77 CPU-s per audio s; N² times it 1.14 s at 0.56.
    interim_step_ms: int = 400
    # The exponent of N above: 1 grows the step with the streams, 0 keeps it. Session 11 (ramp to 6 streams, two
    # runs each): 2 (the default since session 6) gave word-flag lag p95 3.0-3.2 s at 3 streams and 6.1-6.3 s at
    # 6 with a core idle; 1 gave 1.7-1.8 s and 3.4-3.6 s with final p95 within the same spread (6 streams:
    # 1.34-1.63 s against 1.50-1.84 s); 0 saturated both cores (186%) and was worse from 4 streams on.
    interim_step_growth: float = 1.0
    # Interim decodes running at once, server-wide (0: no limit). A stream due for a decode waits its turn
    # (oldest first); beyond the first, a turn starts only while the engine has no urgent work (finals, their
    # segments) waiting, so interim decodes use the CPU the finals leave free (server/interim_turns.py).
    max_interim_decodes: int = 0
    # Start the final assessment when the learner pauses (the segmenter's tail_ms of silence) rather than at
    # the endpoint; if speech resumes the work is dropped. Skipped while more than speculation_max_backlog
    # items wait in the engine, so under load no CPU goes to guesses.
    speculative_finals: bool = True
    speculation_max_backlog: int = 4
    # Open mode: also cut the utterance for early analysis after words the interim decodes committed, not only
    # at silences, so fluent speech without pauses leaves only its last stretch for the endpoint.
    cut_at_committed_words: bool = True
    # ... and, with that on, after the last word an interim decode heard clear of the live edge even before a
    # second decode agrees on it: short utterances rarely commit a word before they end.
    cut_at_settled_words: bool = True
    grace_s: float = 10.0  # SIGTERM: in-flight utterances get this long to finish
    # How often the engine is asked whether it can assess (a Triton it depends on may be down): gRPC health
    # answers NOT_SERVING while it cannot, and SERVING again once it can. 0 turns the check off.
    health_check_interval_s: float = 5.0
    # The engine: a profile from saywell.engine.registry ("cpu": Whisper + pocketsphinx GOP + trained scorers,
    # the default; "synthetic": placeholder scores at no cost, for load testing the serving path) and where its
    # models run. The ASR and aligner settings below are the cpu profile's.
    profile: str = "cpu"
    backend: str = "local"
    device: str = "auto"  # where the profile's torch models run: auto (CUDA when present), cuda, cpu
    # --backend triton (neural profile): the Triton Inference Server serving the model stages (HOST:PORT, gRPC),
    # the limit on each request to it, and TLS to it (PEM files; all optional with triton_ssl). Without a
    # reachable Triton serving the exported models the server refuses to start (deploy/triton/README.md).
    triton_url: str = ""
    triton_timeout_s: float = 10.0
    triton_ssl: bool = False
    triton_root_certificates: str = ""
    triton_private_key: str = ""
    triton_certificate_chain: str = ""
    model_dir: str = ""  # the profile's model folder ("" = its packaged default)
    asr_model: str = "tiny.en"  # packaged name, local CTranslate2 folder, or hub id
    # Open mode's second, larger ASR whose words are assessed (MultiPA's design; "" turns it off). The trained
    # scorer's open checkpoint is fitted with the engine's default; another setting needs its own training.
    target_asr_model: str = "base"
    # How interim words are scored: "frames" from the decode alone where the profile has such a model (the cpu
    # profile's frame-word trees: no phone loop or alignment per interim), "graph" through the final's stages.
    interim_words: str = "frames"
    # Whisper decoding of finals: beam 1 on a 10 s encoder window by default (fast). Beam 5 with window 0
    # (Whisper's full 30 s) is the accuracy-first choice the trained scorer was fitted with: ~0.01-0.03 PCC
    # better on validation utterances, ~3x the ASR cost.
    asr_beam_size: int = 1
    asr_window_s: float = 10.0
    allow_download: bool = False  # let hub ids download (needs the network)
    # New streams are refused while more than this many items wait in the engine's queues: admitting them
    # would only make every open stream slower.
    max_engine_backlog: int = 12
    max_batch_size: int = 4
    # Threads of each pocketsphinx stage (alignment, phone loop); each holds its own ~115 MB decoder.
    aligner_workers: int = 1
    max_wait_ms: float = 5.0
    max_queue_size: int = 64
    warm_up: bool = True  # load models before serving
    # oneDNN (under CTranslate2 and torch) caches compiled kernels per input shape, and every utterance length is
    # a new shape: at its default of 1024 kernels the server grew by ~5 MB/min in a 30-minute soak; at 8 it held
    # flat, with no latency cost measured. Applied at startup by `saywell-server` (ONEDNN_PRIMITIVE_CACHE_CAPACITY).
    onednn_cache_capacity: int = 8
    log_level: str = "INFO"
    log_json: bool = True
    log_transcripts: bool = False  # privacy: transcripts and reference texts reach the logs only when enabled
    tls_cert: str = ""  # PEM server certificate chain; with tls_key turns TLS on ("" = plaintext)
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA bundle: require client certificates signed by it (mutual TLS)
    tokens_file: str = ""  # bearer tokens, one per line: `token [scope,scope]`; no tokens at all = auth off
    tokens: str = field(default="", repr=False, metadata=ENV_ONLY)  # SAYWELL_TOKENS: `token[:scope+scope],...`
    # Concurrent streams per token (or per peer host without auth); 0 = unlimited. Off by default: a chatbot
    # backend fronting many learners is one peer host.
    max_streams_per_client: int = 0

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, "port must be 0..65535"),
            (0 <= self.metrics_port <= 65535, "metrics_port must be 0..65535"),
            (self.max_concurrent_streams >= 1, "max_concurrent_streams must be >= 1"),
            (self.max_message_bytes >= 64 * 1024, "max_message_bytes must be >= 65536"),
            (self.max_utterance_ms >= 1000, "max_utterance_ms must be >= 1000"),
            (self.max_stream_ms >= self.max_utterance_ms, "max_stream_ms must be >= max_utterance_ms"),
            (self.max_reference_text_chars >= 1, "max_reference_text_chars must be >= 1"),
            (self.config_timeout_s > 0, "config_timeout_s must be > 0"),
            (self.idle_timeout_s >= 0, "idle_timeout_s must be >= 0 (0: no idle limit)"),
            (self.max_messages_per_second >= 0, "max_messages_per_second must be >= 0 (0: no limit)"),
            (self.max_pending_finals_per_stream >= 1, "max_pending_finals_per_stream must be >= 1"),
            (self.interim_step_ms >= 100, "interim_step_ms must be >= 100"),
            (0 <= self.interim_step_growth <= 4, "interim_step_growth must be 0..4"),
            (self.max_interim_decodes >= 0, "max_interim_decodes must be >= 0 (0: no limit)"),
            (self.speculation_max_backlog >= 0, "speculation_max_backlog must be >= 0"),
            (self.interim_words in _interim_words(),
             f"interim_words must be one of {', '.join(_interim_words())}, got {self.interim_words!r}"),
            (1 <= self.asr_beam_size <= 10, "asr_beam_size must be 1..10"),
            (self.asr_window_s == 0 or 5 <= self.asr_window_s <= 30, "asr_window_s must be 0 (30 s) or 5..30"),
            (self.grace_s >= 0, "grace_s must be >= 0"),
            (self.health_check_interval_s >= 0, "health_check_interval_s must be >= 0 (0: off)"),
            (self.profile in _profiles(), f"profile must be one of {', '.join(_profiles())}, got {self.profile!r}"),
            (self.onednn_cache_capacity >= 0, "onednn_cache_capacity must be >= 0"),
            (self.max_batch_size >= 1, "max_batch_size must be >= 1"),
            (self.triton_timeout_s > 0, "triton_timeout_s must be > 0"),
            (1 <= self.aligner_workers <= 8, "aligner_workers must be 1..8"),
            (self.max_engine_backlog >= 1, "max_engine_backlog must be >= 1"),
            (self.max_streams_per_client >= 0, "max_streams_per_client must be >= 0 (0: unlimited)"),
            (bool(self.tls_cert) == bool(self.tls_key), "tls_cert and tls_key must be set together "
             f"(got tls_cert={self.tls_cert!r}, tls_key={self.tls_key!r})"),
            (not self.tls_client_ca or self.tls_cert, "tls_client_ca (mutual TLS) needs TLS: set tls_cert and "
             "tls_key too"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        for name in ("tls_cert", "tls_key", "tls_client_ca", "tokens_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name} file {path!r} does not exist")
            if path and name.startswith("tls") and b"-----BEGIN " not in Path(path).read_bytes():
                raise ValueError(f"{name} file {path!r} is not PEM (no '-----BEGIN' line)")
        if self.tokens_file or self.tokens:
            from saywell.server.auth import load_tokens  # only servers that use tokens pay for the import

            load_tokens(self)  # malformed entries fail here, before the server starts

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


def _profiles() -> tuple[str, ...]:
    from saywell.engine.api import profile_names  # the server extra's: a client-only install has no engine

    return profile_names()


def _interim_words() -> tuple[str, ...]:
    from saywell.engine.options import INTERIM_WORDS

    return INTERIM_WORDS


def _env_name(field_name: str) -> str:
    return "SAYWELL_" + field_name.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saywell-server", allow_abbrev=False,  # no prefix matching: `--tokens x` must not mean --tokens-file
        description="saywell gRPC assessment server. Every flag can also be set by its SAYWELL_<NAME> environment "
                    "variable. Bearer tokens: --tokens-file or SAYWELL_TOKENS (never a flag).")
    for f in fields(ServerConfig):
        if f.metadata.get("env_only"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = {int: int, float: float, str: str, bool: _parse_bool}[type(f.default)]
        parser.add_argument(flag, dest=f.name, type=kind, default=None,
                            help=f"default {f.default!r} (env {_env_name(f.name)})")
    return parser


def load_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> ServerConfig:
    """Flags beat environment variables, which beat the defaults."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    values = {}
    for f in fields(ServerConfig):
        kind = {int: int, float: float, str: str, bool: _parse_bool}[type(f.default)]
        if args.get(f.name) is not None:
            values[f.name] = args[f.name]
        elif _env_name(f.name) in environ:
            try:
                values[f.name] = kind(environ[_env_name(f.name)])
            except ValueError as exc:
                raise ValueError(f"{_env_name(f.name)}: {exc}") from None
    return ServerConfig(**values)


def native_environment(config: ServerConfig) -> dict[str, str]:
    """Variables the native libraries read once, so they must be set before the engine is imported."""
    return {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(config.onednn_cache_capacity)}

