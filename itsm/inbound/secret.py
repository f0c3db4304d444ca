"""Mailbox passwords at rest: Fernet (the cryptography library) with a key derived from SECRET_KEY, or
from MAIL_INBOUND_KEY when set (so SECRET_KEY can be rotated without re-entering every password)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


class SecretError(ValueError):
    """The stored password cannot be read with the configured key."""


def _fernet() -> Fernet:
    key = current_app.config.get("MAIL_INBOUND_KEY") or current_app.config["SECRET_KEY"]
    # A key of any form (a passphrase too) becomes Fernet's 32 bytes; the label keeps it apart from
    # other uses of SECRET_KEY.
    derived = hashlib.sha256(b"itsm inbound mailbox password\x00" + str(key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(password: str) -> str:
    return _fernet().encrypt(password.encode()).decode("ascii")


def unseal(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise SecretError("the stored password cannot be decrypted with the current key (SECRET_KEY or "
                          "MAIL_INBOUND_KEY changed?): enter the password again") from None
