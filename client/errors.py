"""Typed errors of the saywell client.

A chatbot catches `SaywellClientError` (or a subclass) and never needs to know
about grpc's exception types; the original grpc error stays on `__cause__`.
"""

from __future__ import annotations

import grpc

__all__ = ["SaywellClientError", "AudioFileError", "RpcFailed", "ServerUnreachable", "rpc_failed", "status_failed"]

# Substrings grpc core puts in UNAVAILABLE details when no connection was made
# (as opposed to a server that answered UNAVAILABLE itself, e.g. when draining).
_NO_CONNECTION_HINTS = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "dns resolution failed",
    "no route to host",
    "name resolution",
)


class SaywellClientError(Exception):
    """Base class of every error the client library raises on purpose."""


class AudioFileError(SaywellClientError):
    """An audio file is missing, unreadable or in an unsupported format."""


class RpcFailed(SaywellClientError):
    """The server (or the transport) ended a call with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str, retry_after_ms: int | None = None) -> None:
        self.code = code
        self.details = details
        self.target = target
        # RESOURCE_EXHAUSTED: how long the server asks the client to wait before trying again (its
        # `retry-after-ms` trailer), when it said.
        self.retry_after_ms = retry_after_ms
        super().__init__(f"{self.code_name}: {details}")

    @property
    def code_name(self) -> str:
        """Status name as written in the gRPC spec, e.g. "INVALID_ARGUMENT"."""
        return self.code.name


class ServerUnreachable(RpcFailed):
    """No connection to a server could be made at `target`."""


def rpc_failed(error: grpc.RpcError, target: str) -> RpcFailed:
    """Convert a grpc error (sync or aio) into the matching typed error."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or ""
    return status_failed(code or grpc.StatusCode.UNKNOWN, details, target, _retry_after_ms(error))


def _retry_after_ms(error: grpc.RpcError) -> int | None:
    try:
        trailers = error.trailing_metadata() or ()
    except Exception:  # an error raised before any call (a bad target) has no trailers to read
        return None
    for key, value in trailers:
        if key == "retry-after-ms":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def status_failed(code: grpc.StatusCode, details: str, target: str,
                  retry_after_ms: int | None = None) -> RpcFailed:
    """The typed error for a non-OK status."""
    lowered = details.lower()
    if code == grpc.StatusCode.UNAVAILABLE and any(h in lowered for h in _NO_CONNECTION_HINTS):
        return ServerUnreachable(code, details, target)
    return RpcFailed(code, details, target, retry_after_ms)
