"""SMPP 3.4 command_status values and what the client does with each one.

Every value defined in SMPP 3.4 table 5-2 has an explicit entry in
`SUBMIT_DECISIONS`. Reserved values and the vendor-specific range
0x0400-0x04FF are unknown to the client: they retry while the TTL lasts,
because losing an OTP to an undocumented code costs more than a few extra
attempts that the TTL bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from budstikke.domain.statuses import NotificationStatus


class CommandStatus(IntEnum):
    """command_status values of SMPP 3.4 (table 5-2)."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF


def describe_status(command_status: int) -> str:
    """Return the SMPP name of a command_status, or its hex value when it has none."""
    try:
        return f"{CommandStatus(command_status).name} (0x{command_status:08X})"
    except ValueError:
        return f"0x{command_status:08X}"


class Action(Enum):
    """Client action after a submit_sm_resp (or generic_nack) with a given status."""

    # The SMSC accepted the part.
    ACCEPT = "accept"
    # The SMSC is overloaded: slow this bind down and send the same part again.
    THROTTLE = "throttle"
    # A transient failure: the part was not accepted and may be sent again later.
    RETRY = "retry"
    # The session is not in a state to submit: close it and use another bind.
    REBIND = "rebind"
    # A permanent failure: the message ends with `failure_status`.
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class StatusDecision:
    action: Action
    failure_status: NotificationStatus | None = None


_ACCEPT: Final = StatusDecision(Action.ACCEPT)
_THROTTLE: Final = StatusDecision(Action.THROTTLE)
_RETRY: Final = StatusDecision(Action.RETRY)
_REBIND: Final = StatusDecision(Action.REBIND)
_FAILED: Final = StatusDecision(Action.FAIL, NotificationStatus.SMS_FAILED)
_INVALID_RECIPIENT: Final = StatusDecision(
    Action.FAIL, NotificationStatus.SMS_FAILED_INVALID_RECIPIENT
)

S = CommandStatus

# The decision for a submit_sm rejected with each status. Codes about our own
# PDU fields (flags, lengths, TLVs) are permanent, because the same PDU sent
# again gets the same status.
SUBMIT_DECISIONS: Final[dict[CommandStatus, StatusDecision]] = {
    S.ESME_ROK: _ACCEPT,
    # Overload. A full message queue at the SMSC is temporary, like throttling,
    # so both slow the bind down and send the part again.
    S.ESME_RTHROTTLED: _THROTTLE,
    S.ESME_RMSGQFUL: _THROTTLE,
    # Transient SMSC-side faults.
    S.ESME_RSYSERR: _RETRY,
    S.ESME_RSUBMITFAIL: _RETRY,
    S.ESME_RX_T_APPN: _RETRY,
    S.ESME_RUNKNOWNERR: _RETRY,
    # The session is not bound as we believe: bind again.
    S.ESME_RINVBNDSTS: _REBIND,
    S.ESME_RALYBND: _REBIND,
    S.ESME_RBINDFAIL: _REBIND,
    S.ESME_RINVPASWD: _REBIND,
    S.ESME_RINVSYSID: _REBIND,
    S.ESME_RINVSYSTYP: _REBIND,
    # The destination number.
    S.ESME_RINVDSTADR: _INVALID_RECIPIENT,
    S.ESME_RINVDSTTON: _INVALID_RECIPIENT,
    S.ESME_RINVDSTNPI: _INVALID_RECIPIENT,
    # The receiving application rejected the message.
    S.ESME_RX_R_APPN: StatusDecision(Action.FAIL, NotificationStatus.SMS_FAILED_REJECTED),
    S.ESME_RX_P_APPN: _FAILED,
    S.ESME_RDELIVERYFAILURE: StatusDecision(Action.FAIL, NotificationStatus.SMS_FAILED_UNDELIVERED),
    # The source address (sender id).
    S.ESME_RINVSRCADR: _FAILED,
    S.ESME_RINVSRCTON: _FAILED,
    S.ESME_RINVSRCNPI: _FAILED,
    # The PDU or one of its fields.
    S.ESME_RINVMSGLEN: _FAILED,
    S.ESME_RINVCMDLEN: _FAILED,
    S.ESME_RINVCMDID: _FAILED,
    S.ESME_RINVPRTFLG: _FAILED,
    S.ESME_RINVREGDLVFLG: _FAILED,
    S.ESME_RINVSERTYP: _FAILED,
    S.ESME_RINVESMCLASS: _FAILED,
    S.ESME_RINVSUBREP: _FAILED,
    S.ESME_RINVREPFLAG: _FAILED,
    S.ESME_RINVSCHED: _FAILED,
    S.ESME_RINVEXPIRY: _FAILED,
    S.ESME_RINVDFTMSGID: _FAILED,
    S.ESME_RINVOPTPARSTREAM: _FAILED,
    S.ESME_ROPTPARNOTALLWD: _FAILED,
    S.ESME_RINVPARLEN: _FAILED,
    S.ESME_RMISSINGOPTPARAM: _FAILED,
    S.ESME_RINVOPTPARAMVAL: _FAILED,
    # Codes of other operations (query, cancel, replace, submit_multi and
    # distribution lists) that a submit_sm should never get back.
    S.ESME_RINVMSGID: _FAILED,
    S.ESME_RCANCELFAIL: _FAILED,
    S.ESME_RREPLACEFAIL: _FAILED,
    S.ESME_RQUERYFAIL: _FAILED,
    S.ESME_RINVNUMDESTS: _FAILED,
    S.ESME_RINVDLNAME: _FAILED,
    S.ESME_RINVDESTFLAG: _FAILED,
    S.ESME_RCNTSUBDL: _FAILED,
    S.ESME_RINVNUMMSGS: _FAILED,
}

del S


def decide_submit_status(command_status: int) -> StatusDecision:
    """Return the decision for a submit_sm_resp with `command_status`."""
    try:
        return SUBMIT_DECISIONS[CommandStatus(command_status)]
    except ValueError:
        # Reserved or vendor-specific: see the module docstring.
        return _RETRY
