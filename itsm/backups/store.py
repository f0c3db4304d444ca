"""Backups on disk: names, manifests and listing.

A backup is two files in BACKUP_DIR: the dump (``itsm-20261121T030000Z.sqlite.gz`` or
``....pgdump``, pg_dump's compressed custom format) and its manifest (the same name plus
``.json``): sha256, size, database kind, row counts per table, app and migration version,
the last verification's outcome and, with BACKUP_COPY_COMMAND, the last copy's (``copy``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import current_app

NAME = re.compile(r"^itsm-(\d{8}T\d{6}Z)\.(sqlite\.gz|pgdump)$")
SUFFIX = {"sqlite": "sqlite.gz", "postgresql": "pgdump"}
FORMAT_VERSION = 1
# A copy still recorded as running this long past its timeout belongs to a process that died mid-copy.
COPY_INTERRUPTED_AFTER = timedelta(seconds=120)
COPY_STATES = {"copied": "copied", "failed": "copy failed", "copying": "copying"}


class BackupError(Exception):
    """A backup operation that cannot go on; the message is for the operator."""


class RestoreIncomplete(BackupError):
    """A restore that failed once it had begun replacing the database: the app stays in maintenance mode
    (read by ``itsm.maintenance.window.Window``) until an operator has put a whole database back."""

    keep_maintenance = "the database may be partly restored"


@dataclass
class Backup:
    path: Path
    created_at: datetime
    manifest: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        """The file's size on disk now (0 when it is gone), never the manifest's word for it."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def manifest_size(self) -> int | None:
        return self.manifest.get("size")

    @property
    def size_mismatch(self) -> bool:
        """The file is not the size its manifest recorded: truncated, emptied or replaced since."""
        return self.manifest_size is not None and self.manifest_size != self.size

    @property
    def verified(self) -> bool | None:
        """True or False after a verification, None before any."""
        return self.manifest.get("verified")

    @property
    def verified_at(self) -> datetime | None:
        """When the last verification ran (the manifest keeps it as ISO 8601 UTC)."""
        try:
            return datetime.fromisoformat(self.manifest["verified_at"]).astimezone(UTC)
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def manifest_path(self) -> Path:
        return manifest_path(self.path)

    @property
    def copy(self) -> dict:
        """The last copy off the machine (BACKUP_COPY_COMMAND) as the manifest recorded it; {} if none."""
        record = self.manifest.get("copy")
        return record if isinstance(record, dict) else {}

    @property
    def copy_state(self) -> str | None:
        """"copied", "copy failed", "copying", "copy interrupted" (still marked copying well past its
        timeout: the process copying it died), or None when it was never copied."""
        state = self.copy.get("state")
        if state == "copying" and _copy_overdue(self.copy):
            return "copy interrupted"
        return COPY_STATES.get(state) if state else None

    @property
    def copied_at(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.copy["finished_at"]).astimezone(UTC)
        except (KeyError, TypeError, ValueError):
            return None


def _copy_overdue(record: dict) -> bool:
    try:
        started = datetime.fromisoformat(record["started_at"]).astimezone(UTC)
        timeout = timedelta(seconds=int(record.get("timeout_seconds") or 0))
    except (KeyError, TypeError, ValueError):
        return True
    return datetime.now(UTC) > started + timeout + COPY_INTERRUPTED_AFTER


def human_size(n: float) -> str:
    """1536 -> "1.5 KiB"; whole bytes below 1 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def size_mismatch_note(backup: Backup) -> str:
    """What the operator needs to know when the file is not the size its manifest recorded."""
    return (f"SIZE MISMATCH: the file is {backup.size} bytes but its manifest says {backup.manifest_size} "
            f"({human_size(backup.manifest_size or 0)}); it was truncated or changed and will not restore")


def backup_dir() -> Path:
    return Path(current_app.config["BACKUP_DIR"])


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def new_name(kind: str, now: datetime) -> str:
    return f"itsm-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.{SUFFIX[kind]}"


def created_at_of(name: str) -> datetime | None:
    match = NAME.match(name)
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if match else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict:
    """The manifest of the backup at ``path``; BackupError when it is missing or unreadable."""
    mpath = manifest_path(path)
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path.name} has no manifest ({mpath.name}); it is not an itsm backup") from None
    except (OSError, ValueError) as err:
        raise BackupError(f"the manifest {mpath.name} cannot be read: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION or "sha256" not in manifest:
        raise BackupError(f"{mpath.name} is not an itsm backup manifest")
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    """Write atomically, so a crash never leaves half a manifest."""
    mpath = manifest_path(path)
    tmp = mpath.with_name(mpath.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, mpath)


def list_backups(directory: Path | None = None) -> list[Backup]:
    """Every backup in the directory, newest first (files without a readable manifest included)."""
    directory = directory or backup_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        created = created_at_of(path.name)
        if created is None:
            continue
        try:
            manifest = read_manifest(path)
        except BackupError:
            manifest = {}
        found.append(Backup(path=path, created_at=created, manifest=manifest))
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def resolve(file: str) -> Path:
    """A backup given by path or by name in BACKUP_DIR."""
    path = Path(file)
    if not path.exists() and not path.is_absolute():
        path = backup_dir() / file
    if not path.is_file():
        raise BackupError(f"no backup file {file!r} (looked in {backup_dir()})")
    return path
