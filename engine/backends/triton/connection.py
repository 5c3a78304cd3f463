"""One replica's connection to Triton: a `tritonclient.grpc.aio` client on its own event loop thread, shared by
the replica's Triton stages.

Stages run on their schedulers' threads (`run_batch` is synchronous, as the Stage shape asks); each call is
handed to this loop and waited for, so one channel multiplexes every stage's requests. A request that finds
Triton gone or too slow raises UnavailableError naming the model; the client is then dropped and the next
request opens a fresh channel, so service resumes as soon as Triton is back, without gRPC's growing reconnect
backoff in the way.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from saywell.engine.options import TritonOptions
from saywell.engine.types import EngineError, UnavailableError

# Triton's answers that mean "not there right now" rather than "this request is wrong": the utterance fails
# with UNAVAILABLE and a later one may succeed. NOT_FOUND: the model was unloaded (a Triton restarting with a
# partial repository answers so until the model is back).
UNAVAILABLE_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "NOT_FOUND", "UNKNOWN")


class TritonConnection:
    def __init__(self, options: TritonOptions) -> None:
        if not options.url:
            raise EngineError("the triton backend needs the server's address: pass --triton-url HOST:PORT "
                              "(Triton's gRPC port, 8001 by default)")
        self.options = options
        self.url = options.url
        self._client = None
        self._in_flight: dict[Any, int] = {}  # calls running per client
        self._users = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="saywell-triton", daemon=True)
        self._thread.start()

    def _new_client(self):
        from tritonclient.grpc.aio import InferenceServerClient

        o = self.options
        return InferenceServerClient(self.url, ssl=o.ssl, root_certificates=o.root_certificates or None,
                                     private_key=o.private_key or None,
                                     certificate_chain=o.certificate_chain or None)

    def call(self, what: str, request: Callable[[Any, float], Awaitable[Any]]) -> Any:
        """`await request(client, timeout_s)` on the connection's loop, from any other thread; `what` names the
        model in errors. Raises UnavailableError (Triton gone, timed out) or EngineError (Triton refused it),
        never a cancellation: that would stop the stage's scheduler rather than fail the batch."""
        if self._loop.is_closed():
            raise EngineError(f"{what}: the connection to Triton at {self.url} is closed")
        future = asyncio.run_coroutine_threadsafe(self._call(what, request), self._loop)
        try:
            return future.result(self.options.timeout_s + 5)  # the request's own deadline comes first
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise UnavailableError(f"{what}: Triton at {self.url} did not answer in {self.options.timeout_s:g} s"
                                   ) from None
        except concurrent.futures.CancelledError:
            raise UnavailableError(f"{what}: the request to Triton at {self.url} was cancelled") from None

    async def _call(self, what: str, request) -> Any:
        from tritonclient.utils import InferenceServerException

        if self._client is None:
            self._client = self._new_client()
        client = self._client
        self._in_flight[client] = self._in_flight.get(client, 0) + 1
        try:
            return await request(client, self.options.timeout_s)
        except InferenceServerException as exc:
            status = (exc.status() or "").removeprefix("StatusCode.")
            detail = (exc.message() or "").strip()
            if status in UNAVAILABLE_STATUSES or not status:
                self._drop(client)
                raise UnavailableError(f"{what}: Triton at {self.url} is unavailable ({status or 'no status'}: "
                                       f"{detail})") from None
            raise EngineError(f"{what}: Triton at {self.url} answered {status}: {detail}") from None
        except (OSError, asyncio.TimeoutError) as exc:
            self._drop(client)
            raise UnavailableError(f"{what}: Triton at {self.url} is unavailable ({exc})") from None
        except asyncio.CancelledError:
            if self._client is client:  # our own cancellation (the caller gave up): let it through
                raise
            # grpc.aio cancels the calls of a channel another call found broken: this one failed the same way
            raise UnavailableError(f"{what}: Triton at {self.url} is unavailable (connection lost)") from None
        finally:
            self._in_flight[client] -= 1
            if self._in_flight[client] == 0:
                del self._in_flight[client]
                if client is not self._client:
                    await client.close()

    def _drop(self, client) -> None:
        """Forgets a client whose channel failed, so the next request reconnects at once; the channel closes
        when its last call returns."""
        if self._client is client:
            self._client = None

    def acquire(self) -> TritonConnection:
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        """One user is done; the last one closes the channel and stops the loop."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._client is not None:
            client, self._client = self._client, None
            asyncio.run_coroutine_threadsafe(client.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
