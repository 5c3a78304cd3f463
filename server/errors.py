"""Client-visible errors: each carries the gRPC status it maps to (see the interceptor in servicer.py)."""
from __future__ import annotations

import grpc


class StatusError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(StatusError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(StatusError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(StatusError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(StatusError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(StatusError):
    code = grpc.StatusCode.UNAVAILABLE
