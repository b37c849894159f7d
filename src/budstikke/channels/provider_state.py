"""Snapshots of a provider's connections, for metrics, health checks and the dashboard.

A provider may implement `metrics_snapshot()` returning a ProviderSnapshot.
Until the SMPP provider does, `snapshot_provider` builds its snapshot from the
provider's public `sessions` and `config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from budstikke.channels.base import Provider


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """One connection of a provider, such as one SMPP bind."""

    name: str  # stable and low in number, e.g. "smpp bind 1"; used as a metric label
    bound: bool
    window_size: int  # requests that may await a response at once
    in_flight: int  # requests sent and not answered yet
    waiting: int  # requests waiting for a free window slot


@dataclass(frozen=True, slots=True)
class ProviderSnapshot:
    """The state of one provider at one moment."""

    kind: str  # "file", "smtp" or "smpp"
    ready: bool
    detail: str  # why the provider is not ready, or a short description when it is
    configured_sessions: int = 0
    sessions: tuple[SessionSnapshot, ...] = ()


@runtime_checkable
class ReportsSnapshot(Protocol):
    """A provider that describes its own state; `snapshot_provider` prefers this method."""

    def metrics_snapshot(self) -> ProviderSnapshot: ...


def snapshot_provider(provider: Provider) -> ProviderSnapshot:
    """Describe a provider's state without raising, whatever the provider."""
    if isinstance(provider, ReportsSnapshot):
        return provider.metrics_snapshot()
    ready, detail = provider.is_ready()
    kind = provider_kind(provider)
    if kind != "smpp":
        return ProviderSnapshot(kind=kind, ready=ready, detail=detail)
    # NOTE: reads the SMPP provider's public session attributes until the
    # provider implements metrics_snapshot() itself.
    sessions = tuple(
        SessionSnapshot(
            name=str(getattr(session, "label", "smpp")),
            bound=bool(getattr(session, "is_bound", False)),
            window_size=int(getattr(getattr(session, "settings", None), "window", 0)),
            in_flight=int(getattr(session, "outstanding", 0)),
            waiting=int(getattr(session, "waiting", 0)),
        )
        for session in getattr(provider, "sessions", ())
    )
    configured = int(getattr(getattr(provider, "config", None), "binds", len(sessions)))
    return ProviderSnapshot(
        kind=kind,
        ready=ready,
        detail=detail,
        configured_sessions=configured,
        sessions=sessions,
    )


def provider_kind(provider: Provider) -> str:
    """Return "file", "smtp", "smpp", or the class name for a provider of another kind."""
    name = type(provider).__name__
    return {"FileOutbox": "file", "SmtpProvider": "smtp", "SmppProvider": "smpp"}.get(
        name, name.lower()
    )
