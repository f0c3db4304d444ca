"""A web host's local copy of stored files, so a file is read from the database once and then sent from
disk with sendfile(2), as fast as static files.

Safe because a blob never changes: its name is its SHA-256, and a copy is kept only after its bytes
hashed to that name. Every download still goes through the database first (the attachment, the user's
right to it), so a removed attachment is never served from here; its copy ages out. Each host has its own
cache (``ATTACHMENT_CACHE_DIR``); ``ATTACHMENT_CACHE_MB`` bounds it (0: no cache), the least recently
used copies going first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
KEEP_DAYS = 30  # a copy not read for this long goes, whatever the room (removed files do not linger)


class Cache:
    def __init__(self, directory: str | os.PathLike, limit_bytes: int) -> None:
        self.directory = Path(directory)
        self.limit = limit_bytes

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256

    def open(self, sha256: str, size: int):
        """The copy, opened for reading, or None. A copy of the wrong size is dropped."""
        if not self.enabled:
            return None
        path = self.path(sha256)
        try:
            handle = path.open("rb")
        except OSError:
            return None
        if os.fstat(handle.fileno()).st_size != size:
            handle.close()
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # read now: the eviction keeps the recently used
        return handle

    def filling(self, sha256: str, size: int, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks`` (the whole file, as read from the database) passed on, and kept on disk once all of
        them went by and hashed to ``sha256``; a download cut short keeps nothing."""
        if not self.enabled or size > self.limit // 4:
            yield from chunks
            return
        try:
            folder = self.path(sha256).parent
            folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=folder, prefix=".partial-")
        except OSError as err:
            log.warning("attachment cache unusable (%s): serving from the database", err)
            yield from chunks
            return
        digest, written, complete = hashlib.sha256(), 0, False
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    yield chunk
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
            complete = written == size and digest.hexdigest() == sha256
            if complete:
                os.replace(temp, self.path(sha256))
                self._make_room()
        except OSError as err:  # a full disk: the download went on, the copy did not
            log.warning("attachment cache: could not keep %s (%s)", sha256[:12], err)
        finally:
            if not complete:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def _make_room(self) -> None:
        """Oldest-read copies go until the cache is within 90% of its limit; copies unread for KEEP_DAYS go."""
        entries = []
        for folder in self.directory.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.startswith(".partial-"):
                    continue
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    entries.append((stat.st_mtime, stat.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        stale = time.time() - KEEP_DAYS * 86400
        for mtime, size, path in entries:
            if total <= self.limit * 0.9 and mtime >= stale:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
