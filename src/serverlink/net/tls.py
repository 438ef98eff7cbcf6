"""Mutual TLS for the server-to-server (LAN) links between serverlink servers.

Both sides present a certificate signed by the deployment's CA and check the
other's: the login server accepts only links whose certificate the CA signed;
a linked server checks that the login server's certificate names the address
it connects to. The original C++ servers speak plain TCP and are trusted by
``whiteip`` instead.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


class TlsConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message says which."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str  # PEM certificate (chain) of this server
    key: str  # PEM private key of that certificate
    ca: str  # PEM CA certificate(s) the peer's certificate must chain to

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(purpose, cafile=self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"TLS CA file {self.ca}: {_reason(exc)}") from None
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"TLS certificate {self.cert} / key {self.key}: {_reason(exc)}"
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def server_context(self) -> ssl.SSLContext:
        context = self._context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED  # mutual: the linked server shows its own
        return context

    def client_context(self) -> ssl.SSLContext:
        return self._context(ssl.Purpose.SERVER_AUTH)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
