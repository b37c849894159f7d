"""Settings from BUDSTIKKE_* environment variables, validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from budstikke.domain.creator_limits import (
    DEFAULT_BURST,
    DEFAULT_PER_RECIPIENT_10MIN,
    DEFAULT_PER_RECIPIENT_DAY,
    DEFAULT_RATE_PER_S,
    CreatorLimits,
)
from budstikke.domain.sms_countries import DEFAULT_SMS_COUNTRIES, parse_sms_countries
from budstikke.domain.webhook_urls import parse_networks
from budstikke.errors import ConfigurationError
from budstikke.otp_key import decode_otp_key

ENV_PREFIX = "BUDSTIKKE_"
# A shorter operator key could be guessed through the dashboard's login form.
MIN_OPERATOR_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Every setting of the service; the field name upper-cased after BUDSTIKKE_ is its variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path("./budstikke-data"),
        description="Folder for the SQLite database, the file outboxes and generated keys.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the database; default: SQLite file budstikke.db in the "
        "data folder. postgresql://user@host/db uses asyncpg.",
    )
    database_pool_size: int = Field(
        default=5,
        ge=1,
        le=100,
        description="PostgreSQL connections each process keeps open; it may open as many "
        "again under load.",
    )
    sms_url: str = Field(
        default="",
        description="SMS provider: file:PATH (default: outbox/sms.jsonl in the data folder) or "
        "smpp://system_id:password@host:port (smpps:// for TLS).",
    )
    email_url: str = Field(
        default="",
        description="Email provider: file:PATH (default: outbox/email.jsonl in the data folder) or "
        "smtp://user:password@host:port?tls=starttls|implicit|none.",
    )
    default_sms_sender: str = Field(
        default="budstikke",
        description="Sender id of SMS orders that name none: up to 11 GSM characters, or a number.",
    )
    default_email_sender: str = Field(
        default="noreply@example.com",
        description="From address of email orders that name none.",
    )
    handoff_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Seconds an instant order waits for its hand-off before the API answers; "
        "a hand-off still running then is finished in the background.",
    )
    sms_max_segments: int = Field(
        default=16, ge=1, le=255, description="Maximum SMS segments per message (1 to 255)."
    )
    worker_poll_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between the worker's scans for due, retried and expired work.",
    )
    worker_concurrency: int = Field(
        default=32, ge=1, le=1000, description="Hand-offs one worker process runs at once."
    )
    lease_s: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="Seconds a claimed notification stays leased to its worker; a worker that "
        "dies loses its claims after this.",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024 + 64 * 1024,
        ge=1024,
        description="Largest request body accepted, in bytes (default 1 MB + 64 KB).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of log lines written to standard error."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log line format: text for people, json for collectors."
    )
    jwks_url: str = Field(
        default="",
        description="JSON Web Key Set that signs accepted JWTs: file:PATH or https://...; "
        "empty: only API keys are accepted.",
    )
    allow_private_condition_endpoints: bool = Field(
        default=False,
        description="Let regular orders' condition endpoints be any address, loopback, private, "
        "link-local and cloud metadata included (tests only); off, the address policy of "
        "webhooks applies, with BUDSTIKKE_CONDITION_ALLOWED_NETWORKS as its exceptions.",
    )
    condition_allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDR networks that condition endpoints may reach although "
        "they are loopback, private, link-local or otherwise not public, e.g. 10.20.0.0/16.",
    )
    otp_key: str = Field(
        default="",
        repr=False,
        description="Key of the HMAC-SHA256 that OTP codes are stored as: hex or base64 of at "
        "least 32 bytes. Empty: otp.key in the data folder, generated on first start. Every "
        "process that checks codes needs the same key.",
    )
    otp_recipient_limit_per_hour: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="OTP verifications one creator may create for one recipient in any hour.",
    )
    otp_failed_check_limit_per_hour: int = Field(
        default=20,
        ge=1,
        le=10_000_000,
        description="Wrong OTP codes one creator's verifications for one recipient may get in "
        "any hour; beyond it every check of that creator's verifications for that recipient "
        "is rejected with 429 until the hour has passed. Other recipients are not affected.",
    )
    jwt_issuer: str = Field(default="", description="Required `iss` of JWTs; empty: not checked.")
    jwt_audience: str = Field(default="", description="Required `aud` of JWTs; empty: not checked.")
    operator_key: str = Field(
        default="",
        repr=False,
        description="Secret of at least 16 characters that opens the dashboard at /dashboard "
        "(login form, or Authorization: Bearer KEY); empty: the dashboard is off.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port on which `budstikke worker` serves /metrics and /health/live; "
        "0: off. `budstikke serve` serves both on its API port.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address that the worker's metrics listener binds to."
    )
    webhook_allow_http: bool = Field(
        default=False,
        description="Accept http:// webhook and callback URLs; by default only https:// is.",
    )
    webhook_allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDR networks that webhooks may reach although they are "
        "loopback, private, link-local or otherwise not public, e.g. 10.20.0.0/16,127.0.0.1/32.",
    )
    webhook_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=30,
        description="Seconds a webhook request may take, from DNS to the response headers; "
        "a 2xx within it counts as delivered.",
    )
    webhook_concurrency: int = Field(
        default=16, ge=1, le=1000, description="Webhook requests one worker process runs at once."
    )
    webhook_concurrency_per_endpoint: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Webhook requests to one endpoint, its callback URLs included, in flight "
        "at once in all worker processes together, so a slow receiver holds no more slots.",
    )
    webhook_concurrency_per_creator: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Webhook requests to one creator's endpoints in flight at once, in all "
        "worker processes together.",
    )
    rate_limit_per_s: float = Field(
        default=DEFAULT_RATE_PER_S,
        ge=0,
        description="New orders per second a creator may place, on average (a token bucket "
        "shared by all processes); 0: no limit. `budstikke limits set` overrides it per creator.",
    )
    rate_limit_burst: int = Field(
        default=DEFAULT_BURST,
        ge=1,
        description="New orders a creator may place at once before the per-second rate applies.",
    )
    recipient_limit_10min: int = Field(
        default=DEFAULT_PER_RECIPIENT_10MIN,
        ge=0,
        description="Instant messages a creator may send to one phone number or email address "
        "in any 10 minutes; 0: no limit.",
    )
    recipient_limit_day: int = Field(
        default=DEFAULT_PER_RECIPIENT_DAY,
        ge=0,
        description="Instant messages a creator may send to one phone number or email address "
        "in any 24 hours; 0: no limit.",
    )
    sms_countries: str = Field(
        default=DEFAULT_SMS_COUNTRIES,
        description="Comma-separated country calling codes that SMS may be sent to, e.g. 47,46; "
        "* for every country. Other numbers are rejected with 400.",
    )
    sensitive_guard: bool = Field(
        default=True,
        description="Reject instant messages whose body or subject contains a Norwegian national "
        "identity number or a payment card number.",
    )
    body_retention_s: int | None = Field(
        default=None,
        ge=0,
        description="Seconds a message body (and email subject) is kept after its notification "
        "is final; unset: 0 for instant orders and 2592000 (30 days) for regular orders. A value "
        "applies to both.",
    )
    request_head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds `budstikke serve` waits for a request line and headers, from the "
        "connection or the first byte of the request; a slower client is disconnected.",
    )
    request_body_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="Seconds a client has to send a whole request body after its headers; a "
        "slower one gets 408 and is disconnected.",
    )
    keep_alive_timeout_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Seconds `budstikke serve` keeps an idle HTTP connection open for the next "
        "request.",
    )

    @field_validator("webhook_allowed_networks", "condition_allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("sms_countries")
    @classmethod
    def _check_sms_countries(cls, value: str) -> str:
        parse_sms_countries(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'budstikke.db'}"

    @property
    def default_limits(self) -> CreatorLimits:
        """Return the limits of every creator that `budstikke limits set` did not change."""
        return CreatorLimits(
            rate_per_s=self.rate_limit_per_s,
            burst=self.rate_limit_burst,
            per_recipient_10min=self.recipient_limit_10min,
            per_recipient_day=self.recipient_limit_day,
            sms_countries=parse_sms_countries(self.sms_countries),
            sensitive_guard=self.sensitive_guard,
        )

    @property
    def resolved_sms_url(self) -> str:
        return self.sms_url or f"file:{self.data_dir / 'outbox' / 'sms.jsonl'}"

    @property
    def resolved_email_url(self) -> str:
        return self.email_url or f"file:{self.data_dir / 'outbox' / 'email.jsonl'}"


def normalise_database_url(url: str) -> str:
    """Pick the async driver for a plain database URL (postgresql:// -> postgresql+asyncpg://)."""
    for plain, with_driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return with_driver + url[len(plain) :]
    return url


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, raising ConfigurationError naming the variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        variable = ENV_PREFIX + field.upper()
        raise ConfigurationError(variable, f"{first['msg']}; got {first.get('input')!r}") from None
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Check the settings that depend on each other or on other modules' rules."""
    if settings.otp_key:
        decode_otp_key(settings.otp_key)
    url = settings.resolved_database_url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigurationError(
            "BUDSTIKKE_DATABASE_URL",
            f"unsupported database {url.split(':', 1)[0]!r}; use sqlite:///PATH or "
            "postgresql://user@host:port/database",
        )
    if 0 < len(settings.operator_key) < MIN_OPERATOR_KEY_LENGTH:
        # The value is a secret, so the message leaves it out.
        raise ConfigurationError(
            "BUDSTIKKE_OPERATOR_KEY",
            f"must be at least {MIN_OPERATOR_KEY_LENGTH} characters; got "
            f"{len(settings.operator_key)}. Generate one with: python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))'",
        )
