"""A local SMTP server for development: it accepts every message and keeps it as a file, and the
outbox page shows what arrived. Nothing is relayed anywhere."""

from __future__ import annotations

import contextlib
import email
import json
import os
import signal
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from aiosmtpd.controller import Controller

KEEP = 500  # newest messages kept; the oldest go
STATE = "sink-state.json"  # how many it keeps, and how many it dropped (for the outbox page)


@dataclass
class SinkState:
    keep: int
    dropped: int


def state(directory: str | Path) -> SinkState | None:
    """What the sink in ``directory`` keeps and has dropped; None before it dropped anything."""
    try:
        data = json.loads((Path(directory) / STATE).read_text())
        return SinkState(int(data["keep"]), int(data["dropped"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _count_dropped(directory: Path, keep: int, dropped: int) -> None:
    before = state(directory)
    path = directory / STATE
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({"keep": keep, "dropped": dropped + (before.dropped if before else 0)}))
    os.replace(partial, path)


class _Store:
    def __init__(self, directory: Path, keep: int = KEEP) -> None:
        self.directory = directory
        self.keep = keep

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 -- aiosmtpd's hook name
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = final.with_suffix(".part")
        partial.write_bytes(envelope.content)
        os.replace(partial, final)  # the page never reads half a message
        dropped = 0
        for old in sorted(self.directory.glob("*.eml"))[:-self.keep]:
            with contextlib.suppress(OSError):
                old.unlink()
                dropped += 1
        if dropped:
            with contextlib.suppress(OSError):
                _count_dropped(self.directory, self.keep, dropped)
        return "250 Message accepted for delivery"


def serve(host: str, port: int, directory: Path, ready=None, keep: int = KEEP) -> None:
    """Run until SIGTERM or SIGINT (honcho stops its processes with SIGTERM)."""
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(_Store(directory, keep), hostname=host, port=port)
    try:
        controller.start()
    except BaseException:
        controller.loop.close()  # else it is closed at exit, after its sockets, with a traceback
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ready:
        ready()
    try:
        stop.wait()
    finally:
        controller.stop()


@dataclass
class SinkMessage:
    name: str
    received_at: datetime
    sender: str
    to: str
    subject: str
    text: str


def _text_of(message) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def recent(directory: str | Path, limit: int = 20) -> list[SinkMessage]:
    """The newest messages the sink received, newest first; unreadable files are skipped."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.eml"), reverse=True)[:limit]:
        try:
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            received = datetime.strptime(path.name.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
            found.append(SinkMessage(path.name, received, str(message["From"] or ""), str(message["To"] or ""),
                                     str(message["Subject"] or ""), _text_of(message)))
        except (OSError, ValueError, LookupError):
            continue
    return found
