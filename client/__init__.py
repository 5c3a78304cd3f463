"""saywell.client: talk to a saywell server from a chatbot, a script or the shell.

Light by design: grpcio, protobuf, numpy and soundfile only (never torch or the engine).
"""

from saywell.client.aio import AsyncSaywellClient
from saywell.client.audio_files import AudioSource, chunks, load_audio
from saywell.client.errors import AudioFileError, RpcFailed, SaywellClientError, ServerUnreachable
from saywell.client.options import ClientOptions, StreamOptions
from saywell.client.stream import SaywellClient

__all__ = [
    "SaywellClient",
    "AsyncSaywellClient",
    "ClientOptions",
    "StreamOptions",
    "AudioSource",
    "load_audio",
    "chunks",
    "SaywellClientError",
    "AudioFileError",
    "RpcFailed",
    "ServerUnreachable",
]
