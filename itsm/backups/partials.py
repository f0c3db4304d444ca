"""Files a backup writes before it is done: the ``.partial`` dump and the scratch directories of snapshots.

The process writing one holds an exclusive ``flock`` on it for as long as it writes. The kernel drops
the lock when that process dies, however it dies (SIGKILL, OOM), so a partial nobody holds a lock on is
one a dead backup left behind, and one that is locked is being written right now, by this process or by
another worker sharing BACKUP_DIR. ``remove_stale`` removes the former and never touches the latter.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"
SCRATCH_PREFIX = "itsm-backup-"
MANIFEST_TMP_AGE_SECONDS = 300  # a manifest is written in milliseconds; a ``.json.tmp`` this old was abandoned


def _same(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open on ``fd`` (a cleaner may have removed it in between)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[int]:
    """Create ``path`` and hold its lock while the caller writes it; yields the descriptor (for fsync)."""
    for _ in range(10):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # a cleaner that found it unlocked has not removed it yet
            time.sleep(0.05)
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same(fd, path):
            break
        os.close(fd)  # taken for stale between create and lock, and removed: create it again
    else:
        raise FileExistsError(f"{path} is held by another backup")
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_dir(near: Path) -> Iterator[Path]:
    """A locked scratch directory next to the backups (same disk, found by ``remove_stale`` after a crash),
    or in the system's temporary folder when there is no backup folder; removed afterwards."""
    parent = near if near.is_dir() else None
    while True:
        path = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same(fd, path):
            break
        os.close(fd)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _take_if_unlocked(path: Path, remove: bool) -> bool:
    """Remove ``path`` (a file or a directory) when no live process holds its lock; True if it was stale."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # being written right now
        if not _same(fd, path):
            return False
        if remove:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def remove_stale(directory: Path, dry_run: bool = False) -> list[Path]:
    """Remove what killed backups left in ``directory`` (``dry_run``: only say what); returns those paths."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        name = path.name
        if (name.startswith("itsm-") and name.endswith(PARTIAL_SUFFIX)) or name.startswith(SCRATCH_PREFIX):
            if _take_if_unlocked(path, remove=not dry_run):
                found.append(path)
        elif name.endswith(".json.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime > MANIFEST_TMP_AGE_SECONDS:
                    if not dry_run:
                        path.unlink(missing_ok=True)
                    found.append(path)
    for path in found:
        log.warning("%s %s, left by a backup that did not finish", "would remove" if dry_run else "removed",
                    path.name)
    return found
