"""Setting mailboxes up (the admin page and ``flask mail mailboxes``): checked values, a sealed password."""

from __future__ import annotations

import re

from flask import current_app
from sqlalchemy import func, select

from itsm.extensions import db
from itsm.inbound import secret
from itsm.inbound.models import SECURITY, Mailbox

HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


class MailboxError(ValueError):
    pass


def check(name: str, host: str, port: int, security: str, username: str, folder: str,
          mailbox_id: int | None = None) -> None:
    if not name or len(name) > 80 or not name.strip() == name:
        raise MailboxError("a mailbox needs a name of 1 to 80 characters, without spaces around it")
    taken = db.session.scalar(select(Mailbox.id).where(func.lower(Mailbox.name) == name.lower()))
    if taken is not None and taken != mailbox_id:
        raise MailboxError(f"there is a mailbox called {name!r} already")
    if not HOST.match(host or ""):
        raise MailboxError(f"{host!r} is not a host name or address")
    if not 1 <= int(port) <= 65535:
        raise MailboxError("the port must be from 1 to 65535")
    if security not in SECURITY:
        raise MailboxError(f"security must be one of {', '.join(SECURITY)}")
    if security == "plain" and not current_app.config["MAIL_INBOUND_ALLOW_PLAIN"]:
        raise MailboxError("plain IMAP sends the password unencrypted: use tls or starttls "
                           "(MAIL_INBOUND_ALLOW_PLAIN=1 allows it for local and test servers)")
    if not username or len(username) > 255:
        raise MailboxError("a mailbox needs a user name (up to 255 characters)")
    if not folder or len(folder) > 255 or any(ch in folder for ch in "\r\n\x00"):
        raise MailboxError("the folder must be a name of up to 255 characters")


def create(*, name: str, host: str, port: int, security: str, username: str, password: str,
           folder: str = "INBOX", **defaults) -> Mailbox:
    check(name, host, port, security, username, folder)
    if not password:
        raise MailboxError("a mailbox needs a password")
    box = Mailbox(name=name, host=host, port=port, security=security, username=username,
                  password_encrypted=secret.seal(password), folder=folder, **defaults)
    db.session.add(box)
    db.session.commit()
    return box
