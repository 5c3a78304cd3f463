"""Client-visible errors: each carries the gRPC status it maps to (see the interceptor in servicer.py)."""
from __future__ import annotations

import grpc

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
