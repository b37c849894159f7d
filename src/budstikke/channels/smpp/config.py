"""Settings of the SMPP provider, read from an smpp:// or smpps:// URL."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from budstikke.channels.smpp.receipts import RECEIPT_ID_BASES
from budstikke.errors import ConfigurationError

DEFAULT_PORT: Final = 2775

# C-octet string limits of bind_transceiver (SMPP 3.4 4.1.5), without the NUL.
MAX_SYSTEM_ID_LENGTH: Final = 15
MAX_PASSWORD_LENGTH: Final = 8
MAX_SYSTEM_TYPE_LENGTH: Final = 12

# Type of number 0-6 and the numbering plans SMPP 3.4 5.2.5 and 5.2.6 define.
VALID_TONS: Final = frozenset(range(7))
VALID_NPIS: Final = frozenset({0, 1, 3, 4, 6, 8, 9, 10, 14, 18})

# A bind with more unanswered submits than this is a configuration mistake:
# SMSCs typically allow 10 to 100.
MAX_WINDOW: Final = 1000
MAX_BINDS: Final = 64

# With the default window of 10 this keeps one submit free for instant
# messages, and regular messages get 95 % of max_rate.
DEFAULT_INSTANT_SHARE: Final = 0.05
# Regular messages keep at least this share, so a backlog of them still drains.
MAX_INSTANT_SHARE: Final = 0.9
# Regular submits wait while the event loop runs later than this (see
# budstikke.channels.loop_headroom); 0 turns the wait off. It is off by
# default. On a shared 2-core machine with a load average of 13, a 5 ms
# target cut the regular drain from 46 to 28 per second, and the instant
# p99 stayed at about 1.25 s (bench/priority.py, 6,000 orders at 100/s on
# SQLite, two runs back to back). NOTE: not yet measured on a host that
# runs nothing else, where the lag comes from the process's own work.
DEFAULT_MAX_LOOP_LAG_MS: Final = 0.0


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """Connection and flow-control settings of the SMPP provider.

    Times are in seconds, `max_rate` in submit_sm per second per bind.
    """

    host: str
    port: int = DEFAULT_PORT
    system_id: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    binds: int = 1
    system_type: str = ""
    window: int = 10
    max_rate: float | None = None
    # Override the TON/NPI derived from the sender id on every submit_sm.
    source_ton: int | None = None
    source_npi: int | None = None
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    # Reconnect delays grow from the first to the maximum, each with jitter.
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    # How long hand_off waits for a bound session before it gives up transiently.
    bind_wait_s: float = 5.0
    # The first pause after a throttling response. It doubles up to the maximum.
    throttle_pause_s: float = 0.5
    throttle_max_pause_s: float = 8.0
    # Set for an SMSC whose message ids differ only in letter case.
    case_sensitive_ids: bool = False
    # How receipts write message ids compared with submit_sm_resp: "same",
    # "decimal" (receipts in decimal, responses in hex) or "hex" (the reverse).
    receipt_id_base: str = "same"
    # Share of each bind's window (rounded up to whole submits) and of its
    # max_rate that regular messages leave free for instant ones.
    instant_share: float = DEFAULT_INSTANT_SHARE
    # Event-loop lag in milliseconds above which regular submits wait, for at
    # most 0.5 s each, so instant work keeps the loop. 0 turns the wait off.
    max_loop_lag_ms: float = DEFAULT_MAX_LOOP_LAG_MS

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def redacted_url(self) -> str:
        """Return the URL without the password, for logs and reprs."""
        scheme = "smpps" if self.tls else "smpp"
        return f"{scheme}://{quote(self.system_id, safe='')}:***@{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, *, setting: str = "BUDSTIKKE_SMS_URL") -> SmppConfig:
        """Parse `smpp://system_id:password@host:port?binds=&window=...`.

        Query parameters: binds, system_type, window, max_rate, source_ton,
        source_npi, enquire_link_s, response_timeout_s, connect_timeout_s,
        reconnect_initial_s, reconnect_max_s, bind_wait_s, throttle_pause_s,
        throttle_max_pause_s, case_sensitive_ids, receipt_id_base, instant_share,
        max_loop_lag_ms.
        Raises ConfigurationError
        naming `setting` for anything invalid; the message never contains
        the password.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("smpp", "smpps"):
            raise ConfigurationError(
                setting, f"scheme must be smpp:// or smpps://; got {parts.scheme or 'none'}://"
            )
        if not parts.hostname:
            raise ConfigurationError(
                setting, "the URL has no host, e.g. smpp://id:secret@host:2775"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ConfigurationError(setting, "the port must be a number from 1 to 65535") from None
        values: dict[str, object] = {}
        for name, raw in parse_qsl(parts.query, keep_blank_values=True):
            if name in values:
                raise ConfigurationError(setting, f"query parameter {name} is given twice")
            values[name] = _parse_query_value(setting, name, raw)
        try:
            return cls(
                host=parts.hostname,
                port=port,
                system_id=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                tls=parts.scheme == "smpps",
                **values,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise ConfigurationError(setting, str(exc)) from None


_INT_PARAMETERS: Final = frozenset({"binds", "window", "source_ton", "source_npi"})
_FLOAT_PARAMETERS: Final = frozenset(
    {
        "max_rate",
        "enquire_link_s",
        "response_timeout_s",
        "connect_timeout_s",
        "reconnect_initial_s",
        "reconnect_max_s",
        "bind_wait_s",
        "throttle_pause_s",
        "throttle_max_pause_s",
    }
)
_BOOL_VALUES: Final = {
    "1": True,
    "true": True,
    "yes": True,
    "0": False,
    "false": False,
    "no": False,
}


def _parse_query_value(setting: str, name: str, raw: str) -> object:
    if name in ("system_type", "receipt_id_base"):
        return raw
    if name == "instant_share":
        try:
            share = float(raw)
        except ValueError:
            share = math.nan
        if not 0 <= share <= MAX_INSTANT_SHARE:
            raise ConfigurationError(
                setting,
                f"instant_share must be a number from 0 to {MAX_INSTANT_SHARE}; got {raw!r}",
            )
        return share
    if name == "max_loop_lag_ms":
        try:
            lag_ms = float(raw)
        except ValueError:
            lag_ms = math.nan
        if not (math.isfinite(lag_ms) and lag_ms >= 0):
            raise ConfigurationError(
                setting,
                f"max_loop_lag_ms must be a number of milliseconds, 0 or more (0 turns the "
                f"wait off); got {raw!r}",
            )
        return lag_ms
    if name == "case_sensitive_ids":
        if raw.lower() not in _BOOL_VALUES:
            raise ConfigurationError(setting, f"{name} must be true or false; got {raw!r}")
        return _BOOL_VALUES[raw.lower()]
    if name in _INT_PARAMETERS:
        if not (raw.isascii() and raw.isdigit()):
            raise ConfigurationError(setting, f"{name} must be a whole number; got {raw!r}")
        return int(raw)
    if name in _FLOAT_PARAMETERS:
        if name == "max_rate" and raw == "":
            return None
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(setting, f"{name} must be a number; got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigurationError(setting, f"{name} must be greater than 0; got {raw!r}")
        return value
    known = sorted(
        _INT_PARAMETERS
        | _FLOAT_PARAMETERS
        | {
            "system_type",
            "case_sensitive_ids",
            "receipt_id_base",
            "instant_share",
            "max_loop_lag_ms",
        }
    )
    raise ConfigurationError(
        setting, f"unknown query parameter {name!r}; known: {', '.join(known)}"
    )


def _check_config(config: SmppConfig) -> None:
    """Raise ValueError naming the first setting that SMPP or this client cannot use."""
    _check_credentials(config)
    _check_flow_control(config)


def _check_credentials(config: SmppConfig) -> None:
    if not config.system_id:
        raise ValueError(
            "system_id is missing: give it as the user name, smpp://system_id:password@host"
        )
    if len(config.system_id) > MAX_SYSTEM_ID_LENGTH:
        raise ValueError(f"system_id is {len(config.system_id)} characters; SMPP allows at most 15")
    if len(config.password) > MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"the password is {len(config.password)} characters; SMPP allows at most 8"
        )
    if len(config.system_type) > MAX_SYSTEM_TYPE_LENGTH:
        raise ValueError(
            f"system_type is {len(config.system_type)} characters; SMPP allows at most 12"
        )

    for name in ("system_id", "password", "system_type"):
        value: str = getattr(config, name)
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"{name} must be printable ASCII")


def _check_flow_control(config: SmppConfig) -> None:
    if not 1 <= config.port <= 65535:
        raise ValueError(f"port must be from 1 to 65535; got {config.port}")
    if not 1 <= config.binds <= MAX_BINDS:
        raise ValueError(f"binds must be from 1 to {MAX_BINDS}; got {config.binds}")
    if not 1 <= config.window <= MAX_WINDOW:
        raise ValueError(f"window must be from 1 to {MAX_WINDOW}; got {config.window}")
    if config.max_rate is not None and not config.max_rate > 0:
        raise ValueError(f"max_rate must be greater than 0; got {config.max_rate}")
    if not 0 <= config.instant_share <= MAX_INSTANT_SHARE:
        raise ValueError(
            f"instant_share must be from 0 to {MAX_INSTANT_SHARE}; got {config.instant_share}"
        )
    if not (math.isfinite(config.max_loop_lag_ms) and config.max_loop_lag_ms >= 0):
        raise ValueError(f"max_loop_lag_ms must be 0 or more; got {config.max_loop_lag_ms}")

    if config.source_ton is not None and config.source_ton not in VALID_TONS:
        raise ValueError(f"source_ton must be from 0 to 6; got {config.source_ton}")
    if config.source_npi is not None and config.source_npi not in VALID_NPIS:
        raise ValueError(f"source_npi must be one of {sorted(VALID_NPIS)}; got {config.source_npi}")
    if config.receipt_id_base not in RECEIPT_ID_BASES:
        raise ValueError(
            f"receipt_id_base must be one of {', '.join(RECEIPT_ID_BASES)}; "
            f"got {config.receipt_id_base!r}"
        )

    if config.reconnect_max_s < config.reconnect_initial_s:
        raise ValueError("reconnect_max_s must not be less than reconnect_initial_s")
    if config.throttle_max_pause_s < config.throttle_pause_s:
        raise ValueError("throttle_max_pause_s must not be less than throttle_pause_s")
