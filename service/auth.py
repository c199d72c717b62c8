"""API keys: who is calling, so that a job belongs to the key that created it.

The gateway stores only sha256 hashes of keys (``TEXTGENSHAP_API_KEYS``, comma-separated,
and/or ``TEXTGENSHAP_API_KEYS_FILE``, one hash a line, ``#`` comments allowed). A caller
sends ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; the key's hash is the job
owner. Without configured keys every caller is :data:`service.contract.jobs.ANONYMOUS`, which is
allowed only on a loopback address (or with ``TEXTGENSHAP_ALLOW_ANONYMOUS=true`` behind
an authenticating proxy): :func:`check_startup` refuses anything else.

Hash a key for the configuration with ``python -m service.auth KEY`` (or
``printf %s KEY | sha256sum``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import sys
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.contract.jobs import ANONYMOUS
from service.contract.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key itself")


class AuthConfigError(ValueError):
    """The key configuration is unusable (malformed hash, unreadable file, open bind)."""


def hash_key(key: str) -> str:
    """The sha256 hex digest under which a key is configured and owns its jobs."""
    return hashlib.sha256(key.encode()).hexdigest()


def _valid_hash(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise AuthConfigError(
            f"API key hash {value[:12]!r}... is not a sha256 hex digest (64 hex characters); "
            "hash a key with: python -m service.auth KEY"
        )
    return value


def configured_hashes(settings: Settings) -> frozenset[str]:
    """Every configured key hash, from the setting and the file."""
    values = [v for v in settings.api_keys.split(",") if v.strip()]
    if settings.api_keys_file is not None:
        try:
            lines = settings.api_keys_file.expanduser().read_text().splitlines()
        except OSError as exc:
            raise AuthConfigError(f"cannot read api_keys_file: {exc}") from exc
        values += [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return frozenset(_valid_hash(v) for v in values)


class KeyRing:
    """Maps a presented key to its owner id (the key's hash), in constant time per key."""

    def __init__(self, hashes: frozenset[str]) -> None:
        self._hashes = sorted(hashes)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(configured_hashes(settings))

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def owner(self, key: str | None) -> str | None:
        """The owner id of ``key``, or None when it matches no configured hash.

        Every configured hash is compared (no early exit) with ``hmac.compare_digest``, so
        timing says nothing about which hash, or how much of it, matched."""
        if not self.enabled:
            return ANONYMOUS
        digest = hash_key(key or "").encode()
        found = False
        for known in self._hashes:
            found |= hmac.compare_digest(digest, known.encode())
        return digest.decode() if found and key else None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts(settings: Settings, bind_host: str) -> list[str] | None:
    """Host header names to answer, or None for any. A keyless gateway on a loopback
    address answers only loopback names: a web page the user opens cannot then reach it
    through a DNS name rebound to 127.0.0.1 (DNS rebinding)."""
    if settings.allowed_hosts.strip():
        return [h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()]
    if is_loopback(bind_host) and not KeyRing.from_settings(settings).enabled:
        return list(LOOPBACK_NAMES)
    return None


def host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` -> ``[::1]``, ``a.b:80`` -> ``a.b``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.split(":", 1)[0]


def check_startup(settings: Settings, host: str) -> KeyRing:
    """The key ring, or :class:`AuthConfigError` when the gateway would serve other
    machines without keys (the embedded default binds 127.0.0.1 and needs none)."""
    ring = KeyRing.from_settings(settings)
    if ring.enabled or is_loopback(host) or settings.allow_anonymous:
        return ring
    mode = "embedded mode" if settings.embedded else "the gateway"
    raise AuthConfigError(
        f"refusing to start {mode} on {host!r} without API keys: anyone who can reach it "
        "could submit jobs and read results. Set TEXTGENSHAP_API_KEYS to the sha256 of each "
        "key (python -m service.auth KEY), bind to 127.0.0.1, or set "
        "TEXTGENSHAP_ALLOW_ANONYMOUS=true if a proxy in front authenticates callers."
    )


def caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_header)],
) -> str:
    """The owner id of the calling key (dependency); 401 when keys are on and it is
    missing or unknown."""
    ring: KeyRing = request.app.state.keys
    presented = bearer.credentials if bearer is not None else api_key
    owner = ring.owner(presented)
    if owner is None:
        raise HTTPException(
            status_code=401,
            detail="missing or unknown API key (send Authorization: Bearer <key> or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


OwnerDep = Annotated[str, Depends(caller)]


def caller_from_headers(request: Request) -> str:
    """:func:`caller` read straight from the headers, for a request whose dependencies never
    ran (FastAPI decodes a JSON body before it resolves them)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials.strip())
        if scheme.lower() == "bearer" and credentials.strip()
        else None
    )
    return caller(request, bearer, request.headers.get("x-api-key"))


def main(argv: list[str]) -> int:
    """``python -m service.auth KEY [KEY ...]``: print each key's hash for the settings."""
    if not argv:
        print("usage: python -m service.auth KEY [KEY ...]", file=sys.stderr)
        return 2
    print(",".join(hash_key(key) for key in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
