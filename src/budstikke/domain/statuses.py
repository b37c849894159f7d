"""Status values of orders and notifications, spelled as Altinn Notifications spells them."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class Priority(IntEnum):
    """Claim order of queued work: a lower value is claimed first."""

    INSTANT = 0
    REGULAR = 1


class OrderType(StrEnum):
    INSTANT = "Instant"
    NOTIFICATION = "Notification"


class OrderStatus(StrEnum):
    # Regular order stored, not yet due.
    REGISTERED = "Order_Registered"
    # Regular order being expanded into notifications.
    PROCESSING = "Order_Processing"
    # Notifications exist and are being sent; instant orders start here.
    PROCESSED = "Order_Processed"
    # Every notification of the order reached a final status.
    COMPLETED = "Order_Completed"
    # The creator cancelled the order before it was sent.
    CANCELLED = "Order_Cancelled"
    # The order's condition endpoint answered that it should not be sent.
    SEND_CONDITION_NOT_MET = "Order_SendConditionNotMet"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_ORDER_STATUSES


_FINAL_ORDER_STATUSES = frozenset(
    {OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.SEND_CONDITION_NOT_MET}
)


class NotificationStatus(StrEnum):
    # Stored and queued; nothing was handed to the provider yet.
    SMS_NEW = "SMS_New"
    # Claimed by a dispatcher that is handing it off now.
    SMS_SENDING = "SMS_Sending"
    # The SMSC accepted every part (submit_sm_resp OK); waiting for a delivery receipt.
    SMS_ACCEPTED = "SMS_Accepted"
    # A delivery receipt said DELIVRD for every part, or the file outbox wrote it.
    SMS_DELIVERED = "SMS_Delivered"
    # A permanent failure with no more specific status, or a receipt that said UNKNOWN.
    SMS_FAILED = "SMS_Failed"
    # The SMSC rejected the destination address.
    SMS_FAILED_INVALID_RECIPIENT = "SMS_Failed_InvalidRecipient"
    # The network refused delivery to the receiver (barred).
    SMS_FAILED_BARRED_RECEIVER = "SMS_Failed_BarredReceiver"
    # A delivery receipt said DELETED.
    SMS_FAILED_DELETED = "SMS_Failed_Deleted"
    # A delivery receipt said EXPIRED: the network's validity period ran out.
    SMS_FAILED_EXPIRED = "SMS_Failed_Expired"
    # A delivery receipt said UNDELIV.
    SMS_FAILED_UNDELIVERED = "SMS_Failed_Undelivered"
    # A delivery receipt said REJECTD.
    SMS_FAILED_REJECTED = "SMS_Failed_Rejected"
    # budstikke's own TTL ended before hand-off, or before a final report came.
    SMS_FAILED_TTL = "SMS_Failed_TTL"

    # Stored and queued; nothing was handed to the provider yet.
    EMAIL_NEW = "Email_New"
    # Claimed by a dispatcher that is handing it off now.
    EMAIL_SENDING = "Email_Sending"
    # The SMTP server accepted the message (250 after DATA).
    EMAIL_SUCCEEDED = "Email_Succeeded"
    # The file outbox wrote the message, or a delivery report confirmed it.
    EMAIL_DELIVERED = "Email_Delivered"
    # A permanent failure with no more specific status.
    EMAIL_FAILED = "Email_Failed"
    # The address or message was refused as malformed.
    EMAIL_FAILED_INVALID_FORMAT = "Email_Failed_InvalidFormat"
    # The server refused the recipient (550, 551 or 553) or a bounce came back.
    EMAIL_FAILED_BOUNCED = "Email_Failed_Bounced"
    # Transient failures continued until they were given up on.
    EMAIL_FAILED_TRANSIENT_ERROR = "Email_Failed_TransientError"
    # budstikke's own TTL ended before hand-off, or before a final report came.
    EMAIL_FAILED_TTL = "Email_Failed_TTL"

    @property
    def is_final(self) -> bool:
        return self not in _NON_FINAL_NOTIFICATION_STATUSES

    @property
    def channel(self) -> Channel:
        return Channel.SMS if self.value.startswith("SMS_") else Channel.EMAIL


_NON_FINAL_NOTIFICATION_STATUSES = frozenset(
    {
        NotificationStatus.SMS_NEW,
        NotificationStatus.SMS_SENDING,
        NotificationStatus.SMS_ACCEPTED,
        NotificationStatus.EMAIL_NEW,
        NotificationStatus.EMAIL_SENDING,
        NotificationStatus.EMAIL_SUCCEEDED,
    }
)

NEW_STATUS = {Channel.SMS: NotificationStatus.SMS_NEW, Channel.EMAIL: NotificationStatus.EMAIL_NEW}
SENDING_STATUS = {
    Channel.SMS: NotificationStatus.SMS_SENDING,
    Channel.EMAIL: NotificationStatus.EMAIL_SENDING,
}
HANDED_OFF_STATUS = {
    Channel.SMS: NotificationStatus.SMS_ACCEPTED,
    Channel.EMAIL: NotificationStatus.EMAIL_SUCCEEDED,
}
DELIVERED_STATUS = {
    Channel.SMS: NotificationStatus.SMS_DELIVERED,
    Channel.EMAIL: NotificationStatus.EMAIL_DELIVERED,
}
FAILED_STATUS = {
    Channel.SMS: NotificationStatus.SMS_FAILED,
    Channel.EMAIL: NotificationStatus.EMAIL_FAILED,
}
FAILED_TTL_STATUS = {
    Channel.SMS: NotificationStatus.SMS_FAILED_TTL,
    Channel.EMAIL: NotificationStatus.EMAIL_FAILED_TTL,
}

# The API's recipient `type` for each channel.
RECIPIENT_TYPE = {Channel.SMS: "SMS", Channel.EMAIL: "Email"}
