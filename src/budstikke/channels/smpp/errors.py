"""Errors of the SMPP layer; the provider translates them to HandOffError at one boundary."""

from __future__ import annotations

from budstikke.errors import BudstikkeError


class SmppError(BudstikkeError):
    """Base of every error raised by the SMPP client, codec and test SMSC."""


class PduError(SmppError):
    """A PDU could not be decoded or encoded.

    `command_status` is the SMPP error code a peer should respond with
    (ESME_RINVCMDLEN for framing and length faults, ESME_RINVCMDID for an
    unknown command). `sequence_number` is set when the header could be read,
    so an error response can refer to the request. `resynchronisable` is False
    when the byte stream can no longer be split into PDUs and the connection
    must be closed.
    """

    def __init__(
        self,
        message: str,
        *,
        command_status: int,
        command_id: int | None = None,
        sequence_number: int | None = None,
        resynchronisable: bool = True,
    ) -> None:
        super().__init__(message)
        self.command_status = command_status
        self.command_id = command_id
        self.sequence_number = sequence_number
        self.resynchronisable = resynchronisable


class SessionClosedError(SmppError):
    """The session closed before a request got its response.

    `written` tells whether the request reached the socket. A request that was
    never written cannot have reached the SMSC and may be sent again on another
    session; one that was written has an unknown outcome.
    """

    def __init__(self, message: str, *, written: bool) -> None:
        super().__init__(message)
        self.written = written


class MalformedResponseError(SmppError):
    """The SMSC sent a response that breaks SMPP: the request has an unknown outcome."""


class ResponseTimeoutError(SmppError):
    """A request was written but its response did not arrive in time: an unknown outcome."""


class BindError(SmppError):
    """The SMSC rejected bind_transceiver or sent no response to it."""

    def __init__(self, message: str, *, command_status: int | None = None) -> None:
        super().__init__(message)
        self.command_status = command_status
