"""Authentication: API keys and JWT bearer tokens, giving a creator and its scopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from budstikke.api.jwks import InvalidTokenError, JwksVerifier
from budstikke.api.key_cache import KeyCache
from budstikke.errors import CREATE_KEY_HINT
from budstikke.store.api_keys import KEY_MARKER, find_key_owner
from budstikke.store.database import Database

CREATE_SCOPE = "altinn:serviceowner/notifications.create"
CREATOR_CLAIM = "urn:altinn:org"
SCOPE_CLAIMS = ("scope", "urn:altinn:scope")
# The length of the creator columns in the database.
MAX_CREATOR_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Principal:
    creator: str


class AuthenticationFailed(Exception):
    """No usable credentials: the API answers 401."""


class AccessDenied(Exception):
    """Valid credentials without the scope or the creator needed: the API answers 403."""


class Authenticator:
    def __init__(
        self, database: Database, jwks: JwksVerifier | None, key_cache: KeyCache | None = None
    ) -> None:
        self.database = database
        self.jwks = jwks
        self.key_cache = key_cache or KeyCache()

    async def authenticate(self, authorization: str | None) -> Principal:
        """Return the caller for an Authorization header value, or raise 401/403 errors."""
        if not authorization:
            raise AuthenticationFailed(
                f"The Authorization header is missing. Send 'Authorization: Bearer <API key>'. "
                f"{CREATE_KEY_HINT}"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'")
        if token.startswith(KEY_MARKER + "_"):
            return await self._authenticate_key(token)
        return await self._authenticate_jwt(token)

    async def _authenticate_key(self, key: str) -> Principal:
        owner = self.key_cache.get(key)
        if owner is None:
            owner = await find_key_owner(self.database, key)
            if owner is None:
                raise AuthenticationFailed(f"The API key is unknown or revoked. {CREATE_KEY_HINT}")
            self.key_cache.remember(key, owner)
        if CREATE_SCOPE not in owner.scopes:
            raise AccessDenied(f"the API key lacks the scope {CREATE_SCOPE}")
        return Principal(creator=owner.creator)

    async def _authenticate_jwt(self, token: str) -> Principal:
        if self.jwks is None:
            raise AuthenticationFailed(
                "The bearer token is not an API key, and this service accepts no JWTs because "
                f"BUDSTIKKE_JWKS_URL is not set. {CREATE_KEY_HINT}"
            )
        try:
            claims = await self.jwks.verify(token)
        except InvalidTokenError as error:
            raise AuthenticationFailed(f"invalid token: {error}") from None
        if CREATE_SCOPE not in token_scopes(claims):
            raise AccessDenied(f"the token lacks the scope {CREATE_SCOPE}")
        creator = claims.get(CREATOR_CLAIM)
        if not isinstance(creator, str) or not creator.strip():
            raise AccessDenied(f"the token names no creator (claim {CREATOR_CLAIM})")
        if not is_valid_creator(creator):
            raise AccessDenied(
                f"the token's creator (claim {CREATOR_CLAIM}) must be 1 to "
                f"{MAX_CREATOR_LENGTH} printable characters without spaces"
            )
        return Principal(creator=creator)


def token_scopes(claims: dict[str, Any]) -> set[str]:
    """Return the scopes of `scope` and `urn:altinn:scope` together.

    Each claim is a space-separated string (RFC 8693) or, from some issuers,
    a list of strings.
    """
    scopes: set[str] = set()
    for name in SCOPE_CLAIMS:
        value = claims.get(name)
        if isinstance(value, str):
            scopes.update(value.split())
        elif isinstance(value, list):
            scopes.update(item for item in value if isinstance(item, str))
    return scopes


def is_valid_creator(creator: str) -> bool:
    """Tell whether a creator fits the creator columns and contains no whitespace or controls."""
    return (
        0 < len(creator) <= MAX_CREATOR_LENGTH
        and creator.isprintable()
        and not any(character.isspace() for character in creator)
    )
