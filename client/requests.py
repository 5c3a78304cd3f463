"""Build StreamAssess request sequences: config first, then audio, paced or not.

The same sequence serves the sync and the asyncio client; only the sleeping differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from saywell.client.audio_files import AudioSource, chunks
from saywell.client.options import StreamOptions
from saywell.v1 import assessment_pb2 as pb

__all__ = ["streaming_config", "stream_requests", "stream_requests_async"]


def assess_request(audio_bytes: bytes, audio_config: pb.AudioConfig,
                   assessment_config: pb.AssessmentConfig | None = None,
                   client_request_id: str = "") -> pb.AssessRequest:
    """The unary Assess request for one whole recording."""
    return pb.AssessRequest(audio=audio_config, assessment=assessment_config or pb.AssessmentConfig(),
                            audio_content=audio_bytes, client_request_id=client_request_id)


def streaming_config(source: AudioSource, opts: StreamOptions) -> pb.StreamingAssessConfig:
    """The StreamingAssessConfig announcing `source` with the options of `opts`."""
    config = pb.StreamingAssessConfig(
        audio=source.audio_config(),
        assessment=pb.AssessmentConfig(
            language_code=opts.language_code,
            reference_text=opts.reference_text,
            flag_sensitivity=opts.flag_sensitivity,
            scorer=opts.scorer,
        ),
        interim_results=opts.interim_results,
        client_request_id=opts.client_request_id,
    )
    if opts.endpointing:
        # Unknown field names raise ValueError here, before anything is sent.
        config.endpointing.CopyFrom(pb.EndpointingConfig(**dict(opts.endpointing)))
    return config


def _schedule(source: AudioSource, opts: StreamOptions) -> Iterator[tuple[float | None, bytes]]:
    """(seconds after start when the chunk may leave or None, chunk) pairs."""
    pieces = chunks(source, opts.chunk_ms)
    if opts.realtime_factor is None or source.duration_s <= 0:
        for piece in pieces:
            yield None, piece
        return
    sent_s = 0.0
    seconds_per_byte = source.duration_s / max(1, len(source.data))
    for piece in pieces:
        # Like a microphone: a chunk exists only once its audio has been spoken.
        sent_s += len(piece) * seconds_per_byte
        yield sent_s / opts.realtime_factor, piece


def stream_requests(source: AudioSource, opts: StreamOptions) -> Iterator[pb.StreamAssessRequest]:
    """Config, then audio chunks (sleeping when paced); the caller half-closes after.

    The config is built here, eagerly, so a bad option raises in the caller and not
    inside grpc's request-consuming thread.
    """
    first = pb.StreamAssessRequest(config=streaming_config(source, opts))
    return _paced(first, source, opts)


def _paced(first: pb.StreamAssessRequest, source: AudioSource, opts: StreamOptions) -> Iterator[pb.StreamAssessRequest]:
    yield first
    start = time.monotonic()
    for due_s, piece in _schedule(source, opts):
        if due_s is not None:
            delay = start + due_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield pb.StreamAssessRequest(audio=piece)


def stream_requests_async(source: AudioSource, opts: StreamOptions) -> AsyncIterator[pb.StreamAssessRequest]:
    """As stream_requests, sleeping with asyncio so many streams share one loop."""
    first = pb.StreamAssessRequest(config=streaming_config(source, opts))
    return _paced_async(first, source, opts)


async def _paced_async(
    first: pb.StreamAssessRequest, source: AudioSource, opts: StreamOptions
) -> AsyncIterator[pb.StreamAssessRequest]:
    yield first
    loop = asyncio.get_running_loop()
    start = loop.time()
    for due_s, piece in _schedule(source, opts):
        if due_s is not None:
            delay = start + due_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield pb.StreamAssessRequest(audio=piece)
