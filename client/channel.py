"""Open sync or asyncio channels from ClientOptions."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio

from saywell.client.errors import SaywellClientError
from saywell.client.options import ClientOptions

__all__ = ["open_channel", "open_aio_channel"]


def _credentials(opts: ClientOptions) -> grpc.ChannelCredentials | None:
    if opts.tls_root_cert is None:
        return None
    try:
        root = Path(opts.tls_root_cert).read_bytes()
    except OSError as e:
        raise SaywellClientError(f"cannot read TLS root certificate {opts.tls_root_cert}: {e}") from e
    return grpc.ssl_channel_credentials(root_certificates=root)


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
