"""Server TLS credentials from PEM files; a client CA turns on mutual TLS (client certificates required)."""
from __future__ import annotations

from pathlib import Path

import grpc

from saywell.server.config import ServerConfig


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """None when TLS is off (plaintext). ServerConfig has already checked that the files exist and are PEM."""
    if not config.tls:
        return None
    cert, key = Path(config.tls_cert).read_bytes(), Path(config.tls_key).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def tls_mode(config: ServerConfig) -> str:
    """'off', 'tls' or 'mutual', for the startup log."""
    return "mutual" if config.tls_client_ca else "tls" if config.tls else "off"
