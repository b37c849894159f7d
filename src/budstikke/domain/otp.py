"""One-time codes: generation, the keyed digest that is stored, the texts that carry them.

The code itself is never stored. A verification keeps HMAC-SHA256 of the
code under a server key, bound to the verification id so that equal codes of
two verifications give different digests, and a check compares digests with
`hmac.compare_digest`. Digests always have the same length, so a code of the
wrong length is compared exactly like any other wrong code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from enum import StrEnum
from uuid import UUID

MIN_CODE_LENGTH = 4
MAX_CODE_LENGTH = 10
DEFAULT_CODE_LENGTH = 6
MIN_TTL_S = 60
MAX_TTL_S = 900
DEFAULT_TTL_S = 300
# A verification ends after this many checks that did not approve it.
MAX_ATTEMPTS = 5
RESEND_COOLDOWN_S = 30
MAX_RESENDS = 3
# The window of the per-recipient and per-creator limits.
LIMIT_WINDOW_S = 3600
MIN_KEY_BYTES = 32
CODE_PLACEHOLDER = "{code}"
# The idempotency ids of the instant orders that carry codes start with this.
# The API rejects it in clients' ids, so a client order never takes a code's id.
ORDER_KEY_PREFIX = "otp:"
LANGUAGES = ("en", "nb", "nn")
DEFAULT_LANGUAGE = "nb"
# Domain separation: this key signs nothing else, but a version tag lets the
# digest input change later without old digests matching new inputs.
_DIGEST_CONTEXT = b"budstikke-otp-v1\x00"


class OtpStatus(StrEnum):
    # Waiting for the right code; checks and resends are allowed.
    PENDING = "pending"
    # A check gave the right code; no check approves it again.
    APPROVED = "approved"
    # The TTL ended while the verification was pending (never stored, derived from expires_at).
    EXPIRED = "expired"
    # The last allowed attempt was wrong; the verification is closed.
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"


def generate_code(length: int) -> str:
    """Return `length` decimal digits from the operating system's CSPRNG, uniform over all codes."""
    if not MIN_CODE_LENGTH <= length <= MAX_CODE_LENGTH:
        raise ValueError(
            f"code length must be {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH}; got {length}"
        )
    # randbelow draws without modulo bias, and zero padding keeps leading zeros.
    return f"{secrets.randbelow(10**length):0{length}d}"


def code_digest(key: bytes, verification_id: UUID, code: str) -> str:
    """Return the hex HMAC-SHA256 of a code as sent, bound to its verification."""
    message = _DIGEST_CONTEXT + verification_id.bytes + code.encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def digests_match(stored: str, submitted: str) -> bool:
    """Compare two digests in time that does not depend on where they differ."""
    return hmac.compare_digest(stored.encode("ascii"), submitted.encode("ascii"))


def effective_status(stored: OtpStatus, expires_at: datetime, now: datetime) -> OtpStatus:
    """Return the status callers get: a pending verification is expired from `expires_at` on."""
    if stored is OtpStatus.PENDING and now >= expires_at:
        return OtpStatus.EXPIRED
    return stored


def whole_minutes(seconds: float) -> int:
    """Return the validity a message states: whole minutes, rounded down to never overstate."""
    return int(seconds // 60)


# Each text fits one GSM-7 SMS with a 10-digit code and 15 minutes (a test checks it).
_SMS_TEXTS: dict[str, tuple[str, str]] = {
    "en": (
        "Your one-time code is {code}. It is valid for 1 minute. Do not share it with anyone.",
        "Your one-time code is {code}. It is valid for {minutes} minutes. "
        "Do not share it with anyone.",
    ),
    "nb": (
        "Engangskoden din er {code}. Den er gyldig i 1 minutt. Ikke del koden med noen.",
        "Engangskoden din er {code}. Den er gyldig i {minutes} minutter. Ikke del koden med noen.",
    ),
    "nn": (
        "Eingongskoden din er {code}. Han er gyldig i 1 minutt. Ikkje del koden med nokon.",
        "Eingongskoden din er {code}. Han er gyldig i {minutes} minutt. Ikkje del koden med nokon.",
    ),
}

_EMAIL_SUBJECTS = {
    "en": "Your one-time code",
    "nb": "Engangskoden din",
    "nn": "Eingongskoden din",
}


def message_text(*, language: str, template: str | None, code: str, valid_minutes: int) -> str:
    """Return the text that carries the code: the caller's template or the built-in text."""
    if template is not None:
        # Plain replacement, not str.format: the template is the caller's text.
        return template.replace(CODE_PLACEHOLDER, code)
    singular, plural = _SMS_TEXTS[language]
    text = singular if valid_minutes == 1 else plural
    return text.replace("{minutes}", str(valid_minutes)).replace(CODE_PLACEHOLDER, code)


def email_subject(language: str) -> str:
    return _EMAIL_SUBJECTS[language]
