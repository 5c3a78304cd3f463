"""Client-visible errors: each carries the gRPC status it maps to (see the interceptor in servicer.py)."""
from __future__ import annotations

import grpc

from saywell.engine.types import InputError, OverloadedError, UnavailableError

# RESOURCE_EXHAUSTED refusals carry this trailer: when to try again, in ms (a balancer's retry, a client's backoff).
RETRY_AFTER_MS = "1000"


class StatusError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Internal(StatusError):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(StatusError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unparsable(InvalidArgument):
    """Request bytes protobuf refuses (grpc.aio raises DecodeError for them)."""

    def __init__(self) -> None:
        super().__init__("request could not be parsed: a truncated or too deeply nested message, or a string field "
                         "that is not UTF-8")


class FailedPrecondition(StatusError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(StatusError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(StatusError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class OutOfRange(StatusError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(StatusError):
    code = grpc.StatusCode.UNAVAILABLE


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message a typed or engine error is answered with."""
    if isinstance(exc, StatusError):
        return exc.code, exc.message
    if isinstance(exc, OverloadedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, UnavailableError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    return grpc.StatusCode.INTERNAL, f"assessment failed: {exc}"
