"""JWT bearer tokens: minted with local keys, checked by the app, and key sets read from a URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from budstikke.api.jwks import MAX_AGE_S, REFRESH_MIN_INTERVAL_S, InvalidTokenError, JwksVerifier
from budstikke.config import Settings
from budstikke.errors import ConfigurationError
from tests.api.servers import uvicorn_server
from tests.conftest import API, JwtIssuer, RunningApp, run_app, write_jwks

WHOAMI_PATH = f"{API}/whoami"
CREATE_SCOPE = "altinn:serviceowner/notifications.create"
GOOD_CLAIMS = {"scope": CREATE_SCOPE, "urn:altinn:org": "digdir"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], kid: str = "test-key") -> str:
    """Return a token with alg=none and an empty signature, as an attacker would send it."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps({"exp": int(time.time()) + 300, **claims}).encode())
    return f"{header}.{payload}."


def public_jwk(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str
) -> dict[str, Any]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        jwk["alg"] = "RS256"
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        jwk["alg"] = "ES256"
    jwk.update({"kid": kid, "use": "sig"})
    return jwk


def mint(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    kid: str,
    claims: dict[str, Any],
    *,
    expires_in_s: int = 300,
) -> str:
    algorithm = "RS256" if isinstance(private_key, rsa.RSAPrivateKey) else "ES256"
    payload = {"exp": int(time.time()) + expires_in_s, **claims}
    return jwt.encode(payload, private_key, algorithm=algorithm, headers={"kid": kid})


async def whoami(app: RunningApp, token: str) -> tuple[int, dict[str, Any]]:
    response = await app.client.get(WHOAMI_PATH, headers=app.headers(token))
    return response.status_code, response.json()


# --- Tokens checked by the app (key set from a file) ------------------------------------------
# Token checks touch the database only for API keys, so these tests run on SQLite alone.


@pytest.fixture
def sqlite_settings(tmp_path: Path, jwt_issuer: JwtIssuer) -> Settings:
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, jwt_issuer)
    return Settings(data_dir=tmp_path / "data", jwks_url=f"file:{jwks_path}")


@pytest.fixture
async def token_app(sqlite_settings: Settings) -> AsyncIterator[RunningApp]:
    async with run_app(sqlite_settings) as app:
        yield app


async def test_valid_token_names_creator(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    status, body = await whoami(token_app, jwt_issuer.token(GOOD_CLAIMS))

    assert status == 200
    assert body == {"creator": "digdir"}


async def test_expired_token_rejected(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    status, body = await whoami(token_app, jwt_issuer.token(GOOD_CLAIMS, expires_in_s=-30))

    assert status == 401
    assert "expired" in body["detail"]


async def test_token_without_exp_rejected(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    token = jwt.encode(
        GOOD_CLAIMS, jwt_issuer.private_key, algorithm="RS256", headers={"kid": jwt_issuer.kid}
    )

    status, body = await whoami(token_app, token)

    assert status == 401
    assert "exp" in body["detail"]


async def test_token_signed_with_wrong_key(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Same kid as the listed key, so only the signature can tell them apart.
    token = mint(other_key, jwt_issuer.kid, GOOD_CLAIMS)

    status, body = await whoami(token_app, token)

    assert status == 401
    assert "Signature verification failed" in body["detail"]


async def test_alg_none_rejected(token_app: RunningApp) -> None:
    status, body = await whoami(token_app, unsigned_token(GOOD_CLAIMS))

    assert status == 401
    assert "'none' is not accepted" in body["detail"]


async def test_hmac_with_public_key_rejected(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    # The classic key confusion: HS256 keyed with the published RSA public key.
    public_pem = jwt_issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": jwt_issuer.kid}).encode())
    payload = b64(json.dumps({"exp": int(time.time()) + 300, **GOOD_CLAIMS}).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64(signature)}"

    status, body = await whoami(token_app, token)

    assert status == 401
    assert "'HS256' is not accepted" in body["detail"]


async def test_missing_scope_forbidden(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    token = jwt_issuer.token({"scope": "altinn:serviceowner/other", "urn:altinn:org": "digdir"})

    status, body = await whoami(token_app, token)

    assert status == 403
    assert CREATE_SCOPE in body["detail"]


async def test_missing_creator_forbidden(token_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    status, body = await whoami(token_app, jwt_issuer.token({"scope": CREATE_SCOPE}))

    assert status == 403
    assert "urn:altinn:org" in body["detail"]


@pytest.mark.parametrize(
    "creator", ["", "   ", "x" * 101, "two words", "tab\there", "nul\x00"], ids=repr
)
async def test_unusable_creator_forbidden(
    token_app: RunningApp, jwt_issuer: JwtIssuer, creator: str
) -> None:
    token = jwt_issuer.token({"scope": CREATE_SCOPE, "urn:altinn:org": creator})

    status, _body = await whoami(token_app, token)

    assert status == 403


@pytest.mark.parametrize(
    "claims",
    [
        {"urn:altinn:scope": CREATE_SCOPE},
        {"scope": "openid", "urn:altinn:scope": f"other {CREATE_SCOPE}"},
        {"scope": ["openid", CREATE_SCOPE]},
    ],
    ids=["altinn-claim", "scope-in-second-claim", "scope-as-list"],
)
async def test_scope_claim_forms_accepted(
    token_app: RunningApp, jwt_issuer: JwtIssuer, claims: dict[str, Any]
) -> None:
    token = jwt_issuer.token({"urn:altinn:org": "digdir", **claims})

    status, body = await whoami(token_app, token)

    assert status == 200, body


async def test_unknown_kid_rejected(token_app: RunningApp) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    status, body = await whoami(token_app, mint(other_key, "no-such-key", GOOD_CLAIMS))

    assert status == 401
    assert "no key with kid" in body["detail"]


async def test_garbage_token_rejected(token_app: RunningApp) -> None:
    status, body = await whoami(token_app, "not.a.jwt")

    assert status == 401
    assert "malformed token" in body["detail"]


async def test_issuer_and_audience_checked(
    sqlite_settings: Settings, jwt_issuer: JwtIssuer
) -> None:
    strict = sqlite_settings.model_copy(
        update={"jwt_issuer": "https://maskinporten.no/", "jwt_audience": "budstikke"}
    )
    right = {"iss": "https://maskinporten.no/", "aud": "budstikke", **GOOD_CLAIMS}

    async with run_app(strict) as app:
        accepted, _ = await whoami(app, jwt_issuer.token(right))
        wrong_issuer, _ = await whoami(app, jwt_issuer.token({**right, "iss": "https://evil/"}))
        wrong_audience, _ = await whoami(app, jwt_issuer.token({**right, "aud": "other"}))
        no_audience, _ = await whoami(
            app, jwt_issuer.token({k: v for k, v in right.items() if k != "aud"})
        )

    assert accepted == 200
    assert wrong_issuer == 401
    assert wrong_audience == 401
    assert no_audience == 401


async def test_api_key_still_accepted_with_jwts_on(token_app: RunningApp) -> None:
    status, body = await whoami(token_app, token_app.api_key)

    assert status == 200
    assert body == {"creator": "ttd"}


# --- Key sets read from a URL -------------------------------------------------------------------


@dataclass
class KeySetServer:
    """A JWKS document served over HTTP on loopback, which a test may change."""

    keys: list[dict[str, Any]]
    url: str = ""
    requests: int = 0
    status_code: int = 200
    extra: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def key_set_server(keys: list[dict[str, Any]]) -> AsyncIterator[KeySetServer]:
    server = KeySetServer(keys)

    async def serve_keys(_request: Request) -> Response:
        server.requests += 1
        if server.status_code != 200:
            return Response("unavailable", status_code=server.status_code)
        return JSONResponse({"keys": server.keys, **server.extra})

    async with uvicorn_server(Starlette(routes=[Route("/jwks.json", serve_keys)])) as base_url:
        server.url = f"{base_url}/jwks.json"
        yield server


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_url_key_set_is_cached(rsa_key: rsa.RSAPrivateKey) -> None:
    async with key_set_server([public_jwk(rsa_key, "k1")]) as server:
        verifier = JwksVerifier(server.url, clock=FakeClock())
        await verifier.load()
        for _ in range(5):
            claims = await verifier.verify(mint(rsa_key, "k1", GOOD_CLAIMS))
            assert claims["urn:altinn:org"] == "digdir"

    assert server.requests == 1


async def test_unknown_kid_refreshes_key_set(rsa_key: rsa.RSAPrivateKey) -> None:
    new_key = ec.generate_private_key(ec.SECP256R1())
    clock = FakeClock()
    async with key_set_server([public_jwk(rsa_key, "k1")]) as server:
        verifier = JwksVerifier(server.url, clock=clock)
        await verifier.load()
        # The issuer rotates to a new key, and the first token with it arrives.
        server.keys = [public_jwk(rsa_key, "k1"), public_jwk(new_key, "k2")]
        clock.now_s += REFRESH_MIN_INTERVAL_S

        claims = await verifier.verify(mint(new_key, "k2", GOOD_CLAIMS))

    assert claims["urn:altinn:org"] == "digdir"
    assert server.requests == 2


async def test_unknown_kids_refresh_at_most_once_a_minute(rsa_key: rsa.RSAPrivateKey) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    clock = FakeClock()
    async with key_set_server([public_jwk(rsa_key, "k1")]) as server:
        verifier = JwksVerifier(server.url, clock=clock)
        await verifier.load()
        clock.now_s += REFRESH_MIN_INTERVAL_S
        for number in range(20):
            with pytest.raises(InvalidTokenError, match="no key with kid"):
                await verifier.verify(mint(other_key, f"forged-{number}", GOOD_CLAIMS))

    assert server.requests == 2


async def test_removed_key_stops_after_max_age(rsa_key: rsa.RSAPrivateKey) -> None:
    clock = FakeClock()
    async with key_set_server([public_jwk(rsa_key, "k1")]) as server:
        verifier = JwksVerifier(server.url, clock=clock)
        await verifier.load()
        server.keys = []
        clock.now_s += MAX_AGE_S - 1
        await verifier.verify(mint(rsa_key, "k1", GOOD_CLAIMS))
        clock.now_s += 1

        with pytest.raises(InvalidTokenError, match="no key with kid"):
            await verifier.verify(mint(rsa_key, "k1", GOOD_CLAIMS))


async def test_failed_refresh_keeps_known_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    clock = FakeClock()
    async with key_set_server([public_jwk(rsa_key, "k1")]) as server:
        verifier = JwksVerifier(server.url, clock=clock)
        await verifier.load()
        server.status_code = 503
        clock.now_s += MAX_AGE_S

        claims = await verifier.verify(mint(rsa_key, "k1", GOOD_CLAIMS))

    assert claims["urn:altinn:org"] == "digdir"
    assert server.requests == 2


async def test_non_signing_keys_skipped(rsa_key: rsa.RSAPrivateKey) -> None:
    secret = b64(b"0123456789abcdef0123456789abcdef")
    entries = [
        {"kty": "oct", "kid": "hmac", "k": secret, "alg": "HS256"},
        {**public_jwk(rsa_key, "enc"), "use": "enc"},
        public_jwk(rsa_key, "k1"),
    ]
    hmac_token = jwt.encode(
        {"exp": int(time.time()) + 60, **GOOD_CLAIMS},
        base64.urlsafe_b64decode(secret + "=="),
        algorithm="HS256",
        headers={"kid": "hmac"},
    )
    async with key_set_server(entries) as server:
        verifier = JwksVerifier(server.url, clock=FakeClock())
        await verifier.load()

        with pytest.raises(InvalidTokenError):
            await verifier.verify(hmac_token)
        with pytest.raises(InvalidTokenError, match="no key with kid 'enc'"):
            await verifier.verify(mint(rsa_key, "enc", GOOD_CLAIMS))
        assert (await verifier.verify(mint(rsa_key, "k1", GOOD_CLAIMS)))["urn:altinn:org"]


async def test_app_reads_key_set_from_url(
    sqlite_settings: Settings, rsa_key: rsa.RSAPrivateKey
) -> None:
    async with key_set_server([public_jwk(rsa_key, "k1")]) as server:
        settings = sqlite_settings.model_copy(update={"jwks_url": server.url})
        async with run_app(settings) as app:
            accepted, body = await whoami(app, mint(rsa_key, "k1", GOOD_CLAIMS))
            forged, _ = await whoami(app, unsigned_token(GOOD_CLAIMS, kid="k1"))

    assert accepted == 200
    assert body == {"creator": "digdir"}
    assert forged == 401


@pytest.mark.parametrize(
    "url",
    ["http://keys.example.com/jwks.json", "http://10.0.0.1/jwks.json", "ftp://x/jwks.json"],
)
def test_insecure_key_set_url_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="BUDSTIKKE_JWKS_URL"):
        JwksVerifier(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/jwks.json", "http://localhost/jwks", "http://[::1]/jwks"]
)
def test_loopback_http_key_set_url_accepted(url: str) -> None:
    JwksVerifier(url)
