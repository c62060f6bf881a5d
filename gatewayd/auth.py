"""API-key authentication: ``x-api-key: KEY`` or ``Authorization: Bearer KEY``, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from gatewayd.errors import GatewaydError


class AuthError(GatewaydError):
    """Missing or wrong API key (HTTP 401)."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def key_fingerprint(key: str) -> str:
    """Short, non-reversible id of a key for logs (never log the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``x-api-key`` first, then ``Authorization: Bearer``; None when absent."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class ApiKeyAuth:
    """Checks presented keys against the configured set."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode() for k in sorted(set(keys)))

    @property
    def enabled(self) -> bool:
        """False when no key is configured (every request is let through)."""
        return bool(self._keys)

    def authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The matching key (used as the rate-limit identity), or None when auth is off.

        Raises :class:`AuthError` when auth is on and the key is missing or unknown. Every configured key is
        compared with :func:`hmac.compare_digest` (no early exit), so timing reveals neither the key nor
        which key matched.
        """
        if not self._keys:
            return None
        presented = presented_key(headers)
        if presented is None:
            raise AuthError("missing_api_key", "an API key is required: send x-api-key or Authorization: Bearer")
        candidate = presented.encode("utf-8", "surrogateescape")
        matched: bytes | None = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key):
                matched = key
        if matched is None:
            raise AuthError("invalid_api_key", "the API key is not valid")
        return matched.decode()
