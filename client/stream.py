"""Synchronous client for chatbots and scripts.

    with SaywellClient("127.0.0.1:50051") as client:
        for response in client.stream_file(load_audio("hello.wav"), reference_text="hello"):
            ...

Every failed call raises a typed error (RpcFailed, ServerUnreachable); leaving a
stream early (break, close) cancels the call on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType

import grpc

from saywell.client.audio_files import AudioSource
from saywell.client.channel import open_channel
from saywell.client.errors import rpc_failed
from saywell.client.options import DEFAULT_TARGET, ClientOptions, StreamOptions
from saywell.client.requests import assess_request, stream_requests
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

__all__ = ["SaywellClient"]


class SaywellClient:
    """Blocking client of saywell.v1.PronunciationAssessment over one channel."""

    def __init__(self, target: str = DEFAULT_TARGET, *, options: ClientOptions | None = None) -> None:
        self.target = target
        self.options = options or ClientOptions()
        self._channel = open_channel(target, self.options)
        self._stub = pb_grpc.PronunciationAssessmentServiceStub(self._channel)

    def capabilities(self) -> pb.Capabilities:
        """What the server accepts: encodings, languages, limits, engine."""
        try:
            return self._stub.GetCapabilities(
                pb.GetCapabilitiesRequest(), timeout=self.options.timeout_s, metadata=self.options.metadata()
            )
        except grpc.RpcError as e:
            raise rpc_failed(e, self.target) from e

    def assess(
        self,
        audio_bytes: bytes,
        audio_config: pb.AudioConfig,
        assessment_config: pb.AssessmentConfig | None = None,
        client_request_id: str = "",
    ) -> pb.AssessResponse:
        """Assess one whole recording as a single utterance (unary Assess)."""
        request = assess_request(audio_bytes, audio_config, assessment_config, client_request_id)
        try:
            return self._stub.Assess(request, timeout=self.options.timeout_s, metadata=self.options.metadata())
        except grpc.RpcError as e:
            raise rpc_failed(e, self.target) from e

    def assess_source(
        self, source: AudioSource, *, reference_text: str = "", flag_sensitivity: float | None = None
    ) -> pb.AssessResponse:
        """assess() for a loaded file."""
        config = pb.AssessmentConfig(reference_text=reference_text, flag_sensitivity=flag_sensitivity)
        return self.assess(source.data, source.audio_config(), config)

    def stream_assess(
        self, requests: Iterable[pb.StreamAssessRequest]
    ) -> Iterator[pb.StreamAssessResponse]:
        """Raw bidi stream: `requests` must start with the config message."""
        call = self._stub.StreamAssess(
            iter(requests), timeout=self.options.stream_timeout_s, metadata=self.options.metadata()
        )
        return self._responses(call)

    def stream_file(
        self,
        source: AudioSource,
        *,
        reference_text: str = "",
        interim_results: bool = True,
        chunk_ms: int = 100,
        realtime_factor: float | None = None,
        endpointing: Mapping[str, int] | None = None,
        flag_sensitivity: float | None = None,
        client_request_id: str = "",
    ) -> Iterator[pb.StreamAssessResponse]:
        """Stream a loaded file: config, audio chunks, half-close; yield responses.

        See StreamOptions for the meaning of each option.
        """
        opts = StreamOptions(
            reference_text=reference_text,
            interim_results=interim_results,
            chunk_ms=chunk_ms,
            realtime_factor=realtime_factor,
            endpointing=endpointing,
            flag_sensitivity=flag_sensitivity,
            client_request_id=client_request_id,
        )
        return self.stream_with(source, opts)

    def stream_with(self, source: AudioSource, opts: StreamOptions) -> Iterator[pb.StreamAssessResponse]:
        """stream_file() taking a StreamOptions."""
        return self.stream_assess(stream_requests(source, opts))

    def _responses(self, call: grpc.Call) -> Iterator[pb.StreamAssessResponse]:
        try:
            yield from call
        except grpc.RpcError as e:
            raise rpc_failed(e, self.target) from e
        finally:
            call.cancel()  # no-op once finished; stops the server when the caller left early

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SaywellClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
