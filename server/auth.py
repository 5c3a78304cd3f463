"""Bearer tokens, scopes and per-client stream limits: one interceptor in front of every other.

Tokens come from `tokens_file` (one per line: `token [scope,scope]`, `#` comments) and the SAYWELL_TOKENS
variable (`token[:scope+scope],...`). A token listed without scopes has them all. Presented tokens are
compared in constant time against every configured token, so timing says nothing about which one matched.
Health checks and reflection stay open: load balancers and grpcurl need no secret.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import grpc

from saywell.server.errors import RETRY_AFTER_MS

if TYPE_CHECKING:
    from saywell.server.config import ServerConfig
    from saywell.server.metrics import ServerMetrics

log = logging.getLogger(__name__)

SCOPES = ("assess", "capabilities")
_SERVICE = "/saywell.v1.PronunciationAssessmentService/"
METHOD_SCOPES = {_SERVICE + "StreamAssess": "assess", _SERVICE + "Assess": "assess",
                 _SERVICE + "GetCapabilities": "capabilities"}
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                        "/grpc.reflection.v1.ServerReflection/")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 token68 characters


@dataclass(frozen=True)
class Token:
    """A configured token, kept only as its SHA-256 digest; `name` (a digest prefix) is safe to log."""

    digest: bytes = field(repr=False)
    scopes: frozenset[str]

    @property
    def name(self) -> str:
        return "token " + self.digest.hex()[:8]


def _digest(secret: str) -> bytes:
    # Equal-length digests make compare_digest's run time independent of the presented token's length.
    return hashlib.sha256(secret.encode()).digest()


def _token(secret: str, scopes: Iterable[str], where: str) -> Token:
    if not _B64TOKEN.fullmatch(secret):
        raise ValueError(f"{where}: a token may hold only letters, digits and -._~+/ (then '=' padding)")
    scopes = [s.strip() for s in scopes if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"{where}: unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    return Token(_digest(secret), frozenset(scopes or SCOPES))


def parse_token_lines(text: str, source: str = "tokens file") -> list[Token]:
    """`token [scope1,scope2]` per line; blank lines and `#` comments are skipped."""
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        where = f"{source} line {number}"
        if len(parts) > 2:
            raise ValueError(f"{where}: expected `token [scope,scope]`, got {len(parts)} fields")
        tokens.append(_token(parts[0], parts[1].split(",") if len(parts) == 2 else (), where))
    return tokens


def parse_token_env(text: str) -> list[Token]:
    """SAYWELL_TOKENS: comma-separated `token[:scope+scope]`."""
    tokens = []
    for number, entry in enumerate(text.split(","), 1):
        entry = entry.strip()
        if not entry:
            continue
        secret, _, scopes = entry.partition(":")
        tokens.append(_token(secret, scopes.split("+"), f"SAYWELL_TOKENS entry {number}"))
    return tokens


def load_tokens(config: ServerConfig) -> tuple[Token, ...]:
    """Every configured token; empty means authentication is off."""
    tokens = parse_token_env(config.tokens)
    if config.tokens_file:
        try:
            text = Path(config.tokens_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"tokens_file {config.tokens_file!r} cannot be read: {exc}") from None
        tokens += parse_token_lines(text, f"tokens_file {config.tokens_file!r}")
    if len({t.digest for t in tokens}) != len(tokens):
        raise ValueError("the same token is configured twice; list each token once with all its scopes")
    return tuple(tokens)


def find_token(tokens: Sequence[Token], presented: str) -> Token | None:
    """The configured token equal to `presented`, compared in constant time against all of them."""
    digest = _digest(presented)
    match = None
    for token in tokens:  # no early exit: every token is compared
        if hmac.compare_digest(digest, token.digest):
            match = token
    return match


def peer_host(peer: str) -> str:
    """'ipv4:10.0.0.7:51234' -> '10.0.0.7', 'ipv6:[::1]:5' -> '::1'; anything else stays whole."""
    kind, _, address = unquote(peer).partition(":")
    if kind in ("ipv4", "ipv6") and ":" in address:
        return address.rsplit(":", 1)[0].strip("[]")
    return peer


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, checks the method's scope, and caps each client's concurrent StreamAssess and Assess calls.

    Refusals are counted in saywell_errors_total{code}. A client is its token when tokens are configured,
    else its peer host.
    """

    def __init__(self, tokens: Sequence[Token], max_streams_per_client: int, metrics: ServerMetrics) -> None:
        self.tokens = tuple(tokens)
        self.max_streams_per_client = max_streams_per_client
        self.metrics = metrics
        self._streams: dict[str, int] = {}

    def active_streams(self) -> dict[str, int]:
        """Open streams per client, e.g. {'127.0.0.1': 2}."""
        return dict(self._streams)

    def authenticate(self, method: str, metadata) -> Token | None:
        """The caller's token (None when auth is off); raises Refused."""
        if not self.tokens:
            return None
        values = [v for k, v in (metadata or ()) if k == "authorization"]
        if not values:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                          "missing bearer token: send `authorization: Bearer <token>` metadata")
        scheme, _, presented = str(values[0]).strip().partition(" ")
        token = find_token(self.tokens, presented.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
        scope = METHOD_SCOPES.get(method)
        if scope is not None and scope not in token.scopes:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{token.name} lacks the '{scope}' scope needed by {method.rsplit('/', 1)[-1]}")
        return token

    async def _refuse(self, context, refusal: Refused, method: str) -> None:
        self.metrics.errors.labels(refusal.code.name).inc()
        log.info("call refused", extra={"method": method, "status": refusal.code.name, "peer": context.peer()})
        if refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            context.set_trailing_metadata((("retry-after-ms", RETRY_AFTER_MS),))
        await context.abort(refusal.code, refusal.message)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if not self.tokens and not self.max_streams_per_client:
            return handler
        try:
            token, refusal = self.authenticate(method, handler_call_details.invocation_metadata), None
        except Refused as exc:
            token, refusal = None, exc
        if handler.unary_unary or handler.stream_unary:
            return self._wrap_unary(handler, method, refusal, token)
        return self._wrap_stream(handler, method, refusal, token)

    def _client_limit(self, method: str) -> int:
        """Concurrent calls a client may have of `method`: the cap counts StreamAssess and Assess together."""
        return self.max_streams_per_client if METHOD_SCOPES.get(method) == "assess" else 0

    async def _admit(self, context, method: str, refusal: Refused | None, token: Token | None) -> str | None:
        """Aborts a refused call; else the client its call counts against (None: the method is not capped)."""
        if refusal is not None:
            await self._refuse(context, refusal, method)
        limit = self._client_limit(method)
        if not limit:
            return None
        client = token.name if token is not None else peer_host(context.peer())
        if self._streams.get(client, 0) >= limit:
            await self._refuse(context, Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                f"client {client} is at its limit of {limit} concurrent "
                                                f"streams; retry after {RETRY_AFTER_MS} ms"), method)
        self._streams[client] = self._streams.get(client, 0) + 1
        return client

    def _release(self, client: str | None) -> None:
        if client is None:
            return
        self._streams[client] -= 1
        if not self._streams[client]:
            del self._streams[client]

    def _wrap_unary(self, handler, method: str, refusal: Refused | None, token: Token | None):
        if refusal is None and not self._client_limit(method):
            return handler
        kind = "unary_unary" if handler.unary_unary else "stream_unary"
        inner = getattr(handler, kind)

        async def unary(request, context):
            client = await self._admit(context, method, refusal, token)
            try:
                return await inner(request, context)
            finally:
                self._release(client)
        return handler._replace(**{kind: unary})

    def _wrap_stream(self, handler, method: str, refusal: Refused | None, token: Token | None):
        if refusal is None and not self._client_limit(method):
            return handler
        kind = "stream_stream" if handler.stream_stream else "unary_stream"
        inner = getattr(handler, kind)

        async def stream(request, context):
            client = await self._admit(context, method, refusal, token)
            try:
                async for response in inner(request, context):
                    yield response
            finally:
                self._release(client)
        return handler._replace(**{kind: stream})
