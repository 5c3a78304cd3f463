"""Options of the client: connection (ClientOptions) and one stream (StreamOptions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from saywell.client.audio_files import MAX_CHUNK_MS, MIN_CHUNK_MS

__all__ = ["ClientOptions", "StreamOptions", "DEFAULT_TARGET"]

DEFAULT_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the server.

    timeout_s: deadline of unary calls (Assess, GetCapabilities), seconds; None: none.
    stream_timeout_s: deadline of a whole StreamAssess call; None (default): none,
        since a live stream lasts as long as the learner speaks.
    tls_root_cert: path of a PEM root certificate; set it to use TLS. None: plaintext
        (unless a client certificate is set: then TLS with the system's roots).
    bearer_token: sent as `authorization: Bearer <token>` metadata on every call.
    max_message_bytes: largest message sent or received.
    tls_client_cert / tls_client_key: paths of a PEM client certificate chain and its
        private key, for servers that require mutual TLS. Set both or neither.
    """

    timeout_s: float | None = 30.0
    stream_timeout_s: float | None = None
    tls_root_cert: str | None = None
    bearer_token: str | None = field(default=None, repr=False)
    max_message_bytes: int = 16 * 1024 * 1024
    tls_client_cert: str | None = None
    tls_client_key: str | None = None

    def __post_init__(self) -> None:
        if bool(self.tls_client_cert) != bool(self.tls_client_key):
            raise ValueError("tls_client_cert and tls_client_key must be set together (mutual TLS)")

    @property
    def tls(self) -> bool:
        return bool(self.tls_root_cert or self.tls_client_cert)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.bearer_token:
            return ()
        return (("authorization", f"Bearer {self.bearer_token}"),)

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]


@dataclass(frozen=True)
class StreamOptions:
    """What one StreamAssess call asks for (see StreamingAssessConfig in the proto).

    realtime_factor: None sends as fast as possible; 1.0 paces chunks like a live
        microphone (each chunk leaves once its audio would have been recorded);
        2.0 is twice as fast as real time.
    endpointing: EndpointingConfig fields by name, e.g. {"end_of_utterance_silence_ms": 500}.
    flag_sensitivity: 0..1 (0 flags the fewest words, 1 the most); None: the server default (0.5).
    """

    reference_text: str = ""
    interim_results: bool = True
    chunk_ms: int = 100
    realtime_factor: float | None = None
    endpointing: Mapping[str, int] | None = field(default=None, hash=False)
    flag_sensitivity: float | None = None
    language_code: str = ""
    scorer: str = ""
    client_request_id: str = ""

    def __post_init__(self) -> None:
        if not MIN_CHUNK_MS <= self.chunk_ms <= MAX_CHUNK_MS:
            raise ValueError(f"chunk_ms must be {MIN_CHUNK_MS}..{MAX_CHUNK_MS}, got {self.chunk_ms}")
        if self.realtime_factor is not None and self.realtime_factor <= 0:
            raise ValueError(f"realtime_factor must be > 0 or None, got {self.realtime_factor}")
        if self.flag_sensitivity is not None and not 0.0 <= self.flag_sensitivity <= 1.0:
            raise ValueError(f"flag_sensitivity must be 0..1, got {self.flag_sensitivity}")
