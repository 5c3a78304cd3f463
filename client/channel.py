"""Open sync or asyncio channels from ClientOptions."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio

from saywell.client.errors import SaywellClientError
from saywell.client.options import ClientOptions

__all__ = ["open_channel", "open_aio_channel"]


def _read(what: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SaywellClientError(f"cannot read TLS {what} {path}: {e}") from e


def _credentials(opts: ClientOptions) -> grpc.ChannelCredentials | None:
    """None for plaintext; a client certificate and key add mutual TLS; no root means the system's roots."""
    if not opts.tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read("root certificate", opts.tls_root_cert),
        private_key=_read("client key", opts.tls_client_key),
        certificate_chain=_read("client certificate", opts.tls_client_cert),
    )


def open_channel(target: str, opts: ClientOptions) -> grpc.Channel:
    creds = _credentials(opts)
    if creds is None:
        return grpc.insecure_channel(target, options=opts.channel_options())
    return grpc.secure_channel(target, creds, options=opts.channel_options())


def open_aio_channel(target: str, opts: ClientOptions) -> grpc.aio.Channel:
    creds = _credentials(opts)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=opts.channel_options())
    return grpc.aio.secure_channel(target, creds, options=opts.channel_options())
