"""Verification of JWT bearer tokens against a JSON Web Key Set from a file or URL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import jwt.types

from budstikke.errors import ConfigurationError

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ["RS256", "ES256"]
# An unknown `kid` refreshes the key set at most this often, so forged tokens
# with random key ids cannot make budstikke hammer the key server.
REFRESH_MIN_INTERVAL_S = 60.0
FETCH_TIMEOUT_S = 5.0


class InvalidTokenError(Exception):
    """The token is not a JWT that budstikke accepts; the message says why."""


class JwksVerifier:
    def __init__(self, url: str, *, issuer: str = "", audience: str = "") -> None:
        if not url.startswith(("file:", "https://", "http://")):
            raise ConfigurationError(
                "BUDSTIKKE_JWKS_URL", f"expected file:PATH or https://...; got {url!r}"
            )
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self._keys: dict[str, Any] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read the key set; raises ConfigurationError if it cannot be read or parsed."""
        document = await self._fetch()
        keys: dict[str, Any] = {}
        for entry in document.get("keys", []):
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError as error:
                logger.warning(
                    "JWKS entry skipped", extra={"event": "jwks_key_skipped", "error": str(error)}
                )
                continue
            keys[str(entry.get("kid", ""))] = key
        self._keys = keys
        self._loaded_at = time.monotonic()

    async def _fetch(self) -> dict[str, Any]:
        try:
            if self.url.startswith("file:"):
                text = await asyncio.to_thread(Path(self.url[len("file:") :]).read_text)
            else:
                async with httpx.AsyncClient(
                    timeout=FETCH_TIMEOUT_S, follow_redirects=False
                ) as client:
                    response = await client.get(self.url)
                    response.raise_for_status()
                    text = response.text
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
        key = await self._key_for(str(header.get("kid", "")))
        options: jwt.types.Options = {"require": ["exp"], "verify_aud": bool(self.audience)}
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=ALLOWED_ALGORITHMS,
                issuer=self.issuer or None,
                audience=self.audience or None,
                options=options,
            )
        except jwt.PyJWTError as error:
            raise InvalidTokenError(str(error)) from None

    async def _key_for(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is None and not kid and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        if key is not None:
            return key
        async with self._lock:
            if time.monotonic() - self._loaded_at >= REFRESH_MIN_INTERVAL_S:
                try:
                    await self.load()
                except ConfigurationError as error:
                    logger.warning(
                        "JWKS refresh failed",
                        extra={"event": "jwks_refresh_failed", "error": str(error)},
                    )
        key = self._keys.get(kid)
        if key is None:
            raise InvalidTokenError(f"no key with kid {kid!r} in the key set")
        return key
