"""The server key that OTP digests are made with: from BUDSTIKKE_OTP_KEY or the data folder.

Every process that checks codes must use the same key. A deployment with
several processes or machines therefore sets BUDSTIKKE_OTP_KEY or shares the
data folder, and the generated file suits the embedded single-process default.
The database keeps the key's fingerprint, and a process whose key has
another fingerprint stops at start (see dispatch/otp.py).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from budstikke.domain.otp import MIN_KEY_BYTES
from budstikke.errors import ConfigurationError

if TYPE_CHECKING:
    from budstikke.config import Settings

logger = logging.getLogger(__name__)

KEY_SETTING = "BUDSTIKKE_OTP_KEY"
KEY_FILE_NAME = "otp.key"
# The message of the fingerprint HMAC. Code digests hash messages with
# another prefix, so a fingerprint never equals the digest of a code.
_FINGERPRINT_LABEL = b"budstikke-otp-key-fingerprint-v1"
_HEX = re.compile(r"[0-9a-fA-F]+")


def decode_otp_key(text: str, *, source: str = KEY_SETTING) -> bytes:
    """Decode a key given as hex or base64 (standard or URL-safe) of at least 32 bytes.

    Text of hex digits only is read as hex. Raises ConfigurationError naming
    `source`; the message never contains the key.
    """
    text = text.strip()
    if _HEX.fullmatch(text) and len(text) % 2 == 0:
        key = bytes.fromhex(text)
    else:
        try:
            padded = text + "=" * (-len(text) % 4)
            alphabet = padded.replace("-", "+").replace("_", "/")
            key = base64.b64decode(alphabet, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                source, "invalid OTP key: the value is neither hex nor base64 text"
            ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(
            source,
            f"the OTP key must hold at least {MIN_KEY_BYTES} bytes; this one holds {len(key)}. "
            "Generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    return key


def load_otp_key(settings: Settings) -> bytes:
    """Return the key from the setting, else from <data_dir>/otp.key, creating that file once."""
    if settings.otp_key:
        return decode_otp_key(settings.otp_key)
    path = settings.data_dir / KEY_FILE_NAME
    if not path.exists():
        create_key_file(path)
    return read_key_file(path)


def describe_key_source(settings: Settings) -> str:
    """Name where load_otp_key reads the key, for messages to the operator."""
    if settings.otp_key:
        return KEY_SETTING
    return f"the key file {settings.data_dir / KEY_FILE_NAME} ({KEY_SETTING} is not set)"


def key_fingerprint(key: bytes) -> str:
    """Return the hex HMAC-SHA256 of a fixed label under the key, which differs between keys.

    The fingerprint can be stored and shown: it reveals nothing about the key
    that would help to compute digests of codes.
    """
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(
            KEY_SETTING, f"cannot read the OTP key file {path}: {error}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "OTP key file is readable by other users; restrict it with chmod 600",
            extra={"event": "otp_key_file_open", "path": str(path)},
        )
    return decode_otp_key(text, source=f"{KEY_SETTING} (file {path})")


def create_key_file(path: Path) -> None:
    """Write a new random key with mode 0600, unless another process created the file first.

    The key goes to a temporary file that is linked into place, so no process
    ever reads a half-written key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, (secrets.token_hex(MIN_KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return  # another process won the race; its key is used
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    logger.info("OTP key generated", extra={"event": "otp_key_generated", "path": str(path)})
