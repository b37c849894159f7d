"""Every SMPP 3.4 command_status maps to a decision for a submit_sm."""

from __future__ import annotations

import pytest

from budstikke.channels.smpp.status_codes import (
    SUBMIT_DECISIONS,
    Action,
    CommandStatus,
    decide_submit_status,
    describe_status,
)
from budstikke.domain.statuses import NotificationStatus

# SMPP 3.4 table 5-2, written out again so a typo in the enum fails here.
SMPP_3_4_STATUSES = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE",
    0xFF: "ESME_RUNKNOWNERR",
}


def test_enum_matches_smpp_table() -> None:
    assert {member.value: member.name for member in CommandStatus} == SMPP_3_4_STATUSES


def test_every_defined_status_has_explicit_decision() -> None:
    assert set(SUBMIT_DECISIONS) == set(CommandStatus)


def test_failures_carry_sms_status_and_others_none() -> None:
    for status, decision in SUBMIT_DECISIONS.items():
        if decision.action is Action.FAIL:
            assert decision.failure_status is not None, status.name
            assert decision.failure_status.channel.value == "sms", status.name
            assert decision.failure_status.is_final, status.name
        else:
            assert decision.failure_status is None, status.name


def test_every_32_bit_value_gets_decision() -> None:
    for value in [*range(0x500), 0x0500, 0x7FFFFFFF, 0xFFFFFFFF]:
        assert isinstance(decide_submit_status(value).action, Action)


@pytest.mark.parametrize("value", [0x09, 0x10, 0x12, 0x16, 0x100, 0x400, 0x4FF, 0xFFFFFFFF])
def test_reserved_and_vendor_codes_retry(value: int) -> None:
    assert decide_submit_status(value).action is Action.RETRY


@pytest.mark.parametrize(
    ("status", "action", "failure_status"),
    [
        (CommandStatus.ESME_ROK, Action.ACCEPT, None),
        (CommandStatus.ESME_RTHROTTLED, Action.THROTTLE, None),
        (CommandStatus.ESME_RMSGQFUL, Action.THROTTLE, None),
        (CommandStatus.ESME_RSYSERR, Action.RETRY, None),
        (CommandStatus.ESME_RSUBMITFAIL, Action.RETRY, None),
        (CommandStatus.ESME_RX_T_APPN, Action.RETRY, None),
        (CommandStatus.ESME_RINVBNDSTS, Action.REBIND, None),
        (
            CommandStatus.ESME_RINVDSTADR,
            Action.FAIL,
            NotificationStatus.SMS_FAILED_INVALID_RECIPIENT,
        ),
        (
            CommandStatus.ESME_RINVDSTTON,
            Action.FAIL,
            NotificationStatus.SMS_FAILED_INVALID_RECIPIENT,
        ),
        (CommandStatus.ESME_RINVSRCADR, Action.FAIL, NotificationStatus.SMS_FAILED),
        (CommandStatus.ESME_RINVMSGLEN, Action.FAIL, NotificationStatus.SMS_FAILED),
        (CommandStatus.ESME_RX_R_APPN, Action.FAIL, NotificationStatus.SMS_FAILED_REJECTED),
        (
            CommandStatus.ESME_RDELIVERYFAILURE,
            Action.FAIL,
            NotificationStatus.SMS_FAILED_UNDELIVERED,
        ),
    ],
)
def test_decision(
    status: CommandStatus, action: Action, failure_status: NotificationStatus | None
) -> None:
    decision = decide_submit_status(status)

    assert decision.action is action
    assert decision.failure_status is failure_status


def test_describe_status() -> None:
    assert describe_status(0x58) == "ESME_RTHROTTLED (0x00000058)"
    assert describe_status(0x401) == "0x00000401"
