"""Verification of JWT bearer tokens against a JSON Web Key Set from a file or URL."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import jwt.types

from budstikke.errors import ConfigurationError

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ["RS256", "ES256"]
# An unknown `kid` refreshes the key set at most this often, so forged tokens
# with random key ids cannot make budstikke hammer the key server.
REFRESH_MIN_INTERVAL_S = 60.0
# A key set older than this is read again before the next token is checked,
# so that a key removed from the set stops working within this time.
MAX_AGE_S = 300.0
FETCH_TIMEOUT_S = 5.0
# A key set contains a few keys of about 1 KB each; anything much larger is not one.
MAX_DOCUMENT_BYTES = 256 * 1024


class InvalidTokenError(Exception):
    """The token is not a JWT that budstikke accepts; the message says why."""


def check_jwks_url(url: str) -> None:
    """Accept file:PATH, https://..., and http:// only to a loopback address.

    Keys fetched over plain HTTP could be swapped by anyone on the path,
    which would let them sign tokens for any creator.
    """
    if url.startswith(("file:", "https://")):
        return
    if url.startswith("http://"):
        host = urlsplit(url).hostname or ""
        if host == "localhost" or is_loopback_address(host):
            return
        raise ConfigurationError(
            "BUDSTIKKE_JWKS_URL",
            f"http:// is accepted only for a loopback address; use https:// for {host!r}",
        )
    raise ConfigurationError(
        "BUDSTIKKE_JWKS_URL", f"expected file:PATH or https://...; got {url!r}"
    )


def is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksVerifier:
    def __init__(
        self,
        url: str,
        *,
        issuer: str = "",
        audience: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_jwks_url(url)
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read the key set; raises ConfigurationError if it cannot be read or parsed."""
        document = await self._fetch()
        keys: dict[str, jwt.PyJWK] = {}
        entries = document.get("keys")
        for entry in entries if isinstance(entries, list) else []:
            key = signing_key(entry)
            if key is not None:
                keys[str(entry.get("kid", ""))] = key
        self._keys = keys
        self._loaded_at = self.clock()
        logger.info("JWKS loaded", extra={"event": "jwks_loaded", "keys": len(keys)})

    async def _fetch(self) -> dict[str, Any]:
        try:
            if self.url.startswith("file:"):
                text = await asyncio.to_thread(Path(self.url[len("file:") :]).read_text)
            else:
                text = await fetch_text(self.url)
            document = json.loads(text)
        except (OSError, ValueError, httpx.HTTPError) as error:
            raise ConfigurationError(
                "BUDSTIKKE_JWKS_URL", f"cannot read the key set: {error}"
            ) from error
        if not isinstance(document, dict):
            raise ConfigurationError("BUDSTIKKE_JWKS_URL", "the key set is not a JSON object")
        return document

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token; raises InvalidTokenError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidTokenError(f"malformed token: {error}") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise InvalidTokenError(f"algorithm {header.get('alg')!r} is not accepted")
        if self.clock() - self._loaded_at >= MAX_AGE_S:
            await self._refresh(min_interval_s=MAX_AGE_S)
        key = await self._key_for(str(header.get("kid", "")))
        options: jwt.types.Options = {
            "require": ["exp"],
            "verify_aud": bool(self.audience),
            "enforce_minimum_key_length": True,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=ALLOWED_ALGORITHMS,
                issuer=self.issuer or None,
                audience=self.audience or None,
                options=options,
            )
        except jwt.PyJWTError as error:
            raise InvalidTokenError(str(error)) from None
        return claims

    async def _key_for(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is None and not kid and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        if key is not None:
            return key
        await self._refresh(min_interval_s=REFRESH_MIN_INTERVAL_S)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidTokenError(f"no key with kid {kid!r} in the key set")
        return key

    async def _refresh(self, *, min_interval_s: float) -> None:
        """Read the key set again unless it was read within `min_interval_s`.

        A failed read keeps the keys already loaded, so an outage of the key
        server does not stop tokens signed with known keys.
        """
        async with self._lock:
            if self.clock() - self._loaded_at < min_interval_s:
                return
            try:
                await self.load()
            except ConfigurationError as error:
                # The next attempt waits a full interval too.
                self._loaded_at = self.clock()
                logger.warning(
                    "JWKS refresh failed; the keys loaded before stay in use",
                    extra={"event": "jwks_refresh_failed", "error": str(error)},
                )


def signing_key(entry: object) -> jwt.PyJWK | None:
    """Return the key of one JWKS entry, or None for one that cannot sign accepted tokens.

    Entries for encryption (`use` other than `sig`) and keys of other
    algorithms, such as HMAC secrets, are skipped with a warning.
    """
    if not isinstance(entry, dict):
        return None
    kid = str(entry.get("kid", ""))[:100]
    if entry.get("use", "sig") != "sig":
        log_skipped_key(kid, f"use is {entry.get('use')!r}, not 'sig'")
        return None
    try:
        key = jwt.PyJWK(entry)
    except jwt.PyJWTError as error:
        log_skipped_key(kid, str(error))
        return None
    if key.algorithm_name not in ALLOWED_ALGORITHMS:
        log_skipped_key(kid, f"algorithm {key.algorithm_name} is not accepted")
        return None
    return key


def log_skipped_key(kid: str, reason: str) -> None:
    logger.warning(
        "JWKS entry skipped", extra={"event": "jwks_key_skipped", "kid": kid, "reason": reason}
    )


async def fetch_text(url: str) -> str:
    """GET a key set without following redirects; raises httpx.HTTPError or ValueError."""
    async with (
        httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"the key set is larger than {MAX_DOCUMENT_BYTES} bytes")
    return body.decode("utf-8")
