"""A real SMTP server (aiosmtpd) on a free local port, for the email tests."""

from __future__ import annotations

import email
import socket
from email.message import Message

from aiosmtpd.controller import Controller

SENDER = "desk@example.com"


def free_port() -> int:
    with reserve_port() as s:
        return s.getsockname()[1]


def reserve_port(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to the port but not listening: connections are refused, as from a mail server that
    is down, and no other test process is handed the same port meanwhile."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    return s


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 -- aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"


class MailServer:
    """Not listening until ``start()``: a port nobody answers on is how "SMTP is down" looks. ``host`` is the
    address it listens on (another machine's processes reach it by a non-loopback one)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._reserved: socket.socket | None = reserve_port(host=host)
        self.port = self._reserved.getsockname()[1]
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def app_config(self) -> dict:
        """The app's settings for sending here."""
        return {"MAIL_SERVER": self.host, "MAIL_PORT": self.port, "MAIL_DEFAULT_SENDER": SENDER}

    def env(self) -> dict:
        """The same, as the environment of a worker process."""
        return {name: str(value) for name, value in self.app_config().items()}

    def start(self) -> None:
        self._release()
        self._controller = Controller(self.inbox, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            try:
                self._reserved = reserve_port(self.port, self.host)
            except OSError:  # taken in between: the tests that stop a server do not rely on the port after
                self._reserved = None

    def close(self) -> None:
        """Stopped, and the port given back."""
        self.stop()
        self._release()

    def _release(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
