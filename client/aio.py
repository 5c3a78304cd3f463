"""asyncio client (grpc.aio), for load testers and async chatbots.

    async with AsyncSaywellClient(target) as client:
        async for response in client.stream_file(source, realtime_factor=1.0):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from saywell.client.audio_files import AudioSource
from saywell.client.channel import open_aio_channel
from saywell.client.errors import RpcFailed, rpc_failed, status_failed
from saywell.client.options import DEFAULT_TARGET, ClientOptions, StreamOptions
from saywell.client.requests import assess_request, stream_requests_async
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

__all__ = ["AsyncSaywellClient"]

T = TypeVar("T")


class AsyncSaywellClient:
    """The asyncio twin of SaywellClient; create it inside a running event loop."""

    def __init__(self, target: str = DEFAULT_TARGET, *, options: ClientOptions | None = None) -> None:
        self.target = target
        self.options = options or ClientOptions()
        self._channel = open_aio_channel(target, self.options)
        self._stub = pb_grpc.PronunciationAssessmentServiceStub(self._channel)

    async def capabilities(self) -> pb.Capabilities:
        try:
            return await self._stub.GetCapabilities(
                pb.GetCapabilitiesRequest(), timeout=self.options.timeout_s, metadata=self.options.metadata()
            )
        except grpc.RpcError as e:
            raise rpc_failed(e, self.target) from e

    async def assess(
        self,
        audio_bytes: bytes,
        audio_config: pb.AudioConfig,
        assessment_config: pb.AssessmentConfig | None = None,
        client_request_id: str = "",
    ) -> pb.AssessResponse:
        request = assess_request(audio_bytes, audio_config, assessment_config, client_request_id)
        try:
            return await self._stub.Assess(request, timeout=self.options.timeout_s, metadata=self.options.metadata())
        except grpc.RpcError as e:
            raise rpc_failed(e, self.target) from e

    async def stream_assess(
        self, requests: AsyncIterable[pb.StreamAssessRequest]
    ) -> AsyncIterator[pb.StreamAssessResponse]:
        """Raw bidi stream: `requests` must start with the config message."""
        # Written by our own task, not handed to grpc as a request iterator: grpc.aio
        # reports INTERNAL instead of the server's status when a write fails because
        # the server already ended the call (grpc/grpc#36066). We stop writing as soon
        # as the call is done, so an early abort (e.g. RESOURCE_EXHAUSTED) keeps its code.
        call = self._stub.StreamAssess(timeout=self.options.stream_timeout_s, metadata=self.options.metadata())
        first_status = _FirstStatus()
        call.add_done_callback(first_status)
        writer = asyncio.ensure_future(_write_requests(call, requests))
        try:
            async for response in call:
                yield response
        except grpc.RpcError as e:
            if writer.done() and not writer.cancelled() and writer.exception() is not None:
                raise writer.exception() from e  # the request iterator failed: that is the cause
            raise first_status.error_for(e, self.target) from e
        finally:
            call.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

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
    ) -> AsyncIterator[pb.StreamAssessResponse]:
        """Async generator of the responses to streaming `source` (see SaywellClient.stream_file)."""
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

    def stream_with(self, source: AudioSource, opts: StreamOptions) -> AsyncIterator[pb.StreamAssessResponse]:
        return self.stream_assess(stream_requests_async(source, opts))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncSaywellClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _write_requests(call: grpc.aio.StreamStreamCall, requests: AsyncIterable[pb.StreamAssessRequest]) -> None:
    """Send every request then half-close; stop quietly once the call has ended."""
    try:
        async for request in requests:
            if call.done():
                return
            await call.write(request)
        if not call.done():
            await call.done_writing()
    except (grpc.RpcError, asyncio.InvalidStateError):
        return  # the call ended; the reader reports its status
    except BaseException:
        call.cancel()
        raise


_CORE_WRITE_ERROR = "Internal error from Core"


class _FirstStatus:
    """Done callback remembering the first status a call ended with.

    grpc.aio calls done callbacks each time it sets a status, and a failed write
    overwrites the server's status with INTERNAL (grpc/grpc#36066). The first one
    is the server's.
    """

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def __call__(self, call: grpc.aio.Call) -> None:
        if self.code is None:
            self.code = _result_now(call.code())
            self.details = _result_now(call.details()) or ""

    def error_for(self, error: grpc.RpcError, target: str) -> RpcFailed:
        reported = rpc_failed(error, target)
        overwritten = reported.code == grpc.StatusCode.INTERNAL and reported.details == _CORE_WRITE_ERROR
        if overwritten and self.code not in (None, grpc.StatusCode.OK, grpc.StatusCode.INTERNAL):
            return status_failed(self.code, self.details, target)
        return reported


def _result_now(coro: Coroutine[Any, Any, T]) -> T | None:
    """Run a coroutine that completes without suspending (a call's code() or
    details() once the call is done), from a synchronous callback."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    return None
