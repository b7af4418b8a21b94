"""Who may use the workbench and which POSTs it takes: the bind rule (loopback, or a token),
the access token, CSRF tokens and the Host/Origin checks. No I/O, no framework."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from kbflow.errors import ConfigError

#: A token shorter than this is refused: it guards every decision when the page is reachable
#: from other machines.
MIN_TOKEN_CHARS = 16

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header's name) is this machine only."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (``ConfigError``) a non-loopback bind without a token, and a weak token. The
    message never repeats the token."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"the workbench token must have at least {MIN_TOKEN_CHARS} characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve the review workbench on {host} without a token: anyone who "
            "reaches it could decide; pass --token or set KBFLOW_REVIEW_TOKEN, or bind 127.0.0.1"
        )


def host_name(host_header: str) -> str:
    """The name part of a Host header (``127.0.0.1:8700`` -> ``127.0.0.1``, ``[::1]:80`` ->
    ``::1``)."""
    return urlsplit(f"//{host_header}").hostname or ""


def same_origin(origin_or_referer: str, host_header: str) -> bool:
    """Whether an Origin (or Referer) header names this server (host and port as in Host)."""
    parts = urlsplit(origin_or_referer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host_header.strip().lower()


class Guard:
    """The process's secrets: the access token (None: loopback, no token) and a random CSRF
    key, new each start (a form rendered before a restart is refused, 403: reload it)."""

    def __init__(self, token: str | None) -> None:
        self._token = token or None
        self._csrf_key = secrets.token_bytes(32)

    @property
    def needs_token(self) -> bool:
        return self._token is not None

    def token_ok(self, candidate: str) -> bool:
        return self._token is not None and hmac.compare_digest(
            candidate.encode(), self._token.encode()
        )

    def session_value(self) -> str:
        """What the access cookie holds once the token was shown: derived from the token, so
        the cookie is not the token itself."""
        assert self._token is not None
        return hmac.new(
            self._token.encode(), b"kbflow-workbench-session", hashlib.sha256
        ).hexdigest()

    def session_ok(self, cookie: str) -> bool:
        return self._token is not None and hmac.compare_digest(
            cookie.encode(), self.session_value().encode()
        )

    @staticmethod
    def new_browser_id() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, browser_id: str) -> str:
        """The token every form of the browser with cookie ``browser_id`` carries."""
        return hmac.new(self._csrf_key, browser_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, browser_id: str, token: str) -> bool:
        return bool(browser_id) and hmac.compare_digest(
            token.encode(), self.csrf_token(browser_id).encode()
        )
