"""The blob store: write a file once by its SHA-256, read it back a chunk at a time, drop unused blobs.

Writes go through the caller's session and commit with the caller's rows. Two uploads of the same new
file at once: the second waits on the first's primary key (ON CONFLICT DO NOTHING) and, once the first
commits, links to its blob instead of writing another. A blob found in place is locked FOR SHARE until
the caller commits, so the cleanup job (which skips locked rows) cannot delete it under a new attachment.
SQLite has no row locks: there the look-up is a no-op UPDATE, which takes the database's write lock, so the
cleanup's DELETE waits for the caller's commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import column, delete, exists, select, table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from itsm.attachments.detect import HEAD_BYTES, detect
from itsm.attachments.models import CHUNK_SIZE, Attachment, Blob, BlobChunk
from itsm.dbtypes import utcnow
from itsm.extensions import db


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    content_type: str
    written: bool  # False: the blob was already there (stored once)


def _read(stream: BinaryIO, size: int) -> bytes:
    """Exactly ``size`` bytes, fewer only at the end: chunk boundaries must fall at multiples of the size."""
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def digest(stream: BinaryIO) -> tuple[str, int, bytes]:
    """SHA-256, size and first bytes of a seekable stream, read a chunk at a time."""
    stream.seek(0)
    sha, size, head = hashlib.sha256(), 0, b""
    while chunk := _read(stream, CHUNK_SIZE):
        if len(head) < HEAD_BYTES:
            head += chunk[:HEAD_BYTES - len(head)]
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size, head


def _locked(sha256: str) -> bool:
    """The blob is there (and now locked for share until commit: see the module's note)."""
    if db.session.get_bind().dialect.name == "sqlite":
        # A SELECT holds nothing here, and when nothing was written before it (an edit that only adds files)
        # it runs outside any transaction: the cleanup could delete the blob before the attachment is
        # inserted. The no-op UPDATE opens the write transaction, and holds the write lock until commit.
        touch = update(Blob).where(Blob.sha256 == sha256).values(size=Blob.size)
        return db.session.execute(touch.execution_options(synchronize_session=False)).rowcount == 1
    query = select(Blob.sha256).where(Blob.sha256 == sha256).with_for_update(read=True)
    return db.session.execute(query).first() is not None


def _claim(sha256: str, size: int) -> bool:
    """Insert the blob's row; False when it already exists (then nothing is to be written)."""
    if _locked(sha256):
        return False
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"sha256": sha256, "size": size, "chunk_size": CHUNK_SIZE, "created_at": utcnow()}
    inserted = db.session.execute(insert(Blob.__table__).values(values).on_conflict_do_nothing(
        index_elements=["sha256"]).returning(Blob.__table__.c.sha256)).first()
    if inserted is not None:
        return True
    _locked(sha256)  # the concurrent upload committed it: lock it like one found in place
    return False


def put(stream: BinaryIO) -> Stored:
    """Store a seekable stream's bytes (the caller has refused empty files); the caller commits."""
    sha256, size, head = digest(stream)
    if size == 0:
        raise ValueError("an empty file has nothing to store")
    written = _claim(sha256, size)
    if written:
        stream.seek(0)
        seq = 0
        # Core inserts, one chunk each: the session keeps no copy of the bytes, so memory stays flat.
        while chunk := _read(stream, CHUNK_SIZE):
            db.session.execute(BlobChunk.__table__.insert(), {"sha256": sha256, "seq": seq, "data": chunk})
            seq += 1
    return Stored(sha256=sha256, size=size, content_type=detect(head), written=written)


_CHUNK = select(BlobChunk.data).where(BlobChunk.sha256 == db.bindparam("sha256"), BlobChunk.seq == db.bindparam("seq"))
_PG_CHUNK = "SELECT data FROM attachment_chunks WHERE sha256 = %s AND seq = %s"


def _chunk(engine, sha256: str, seq: int) -> bytes | None:
    """One chunk (None when it is not there), on a pooled connection held only for this query."""
    with engine.connect() as conn:
        if engine.dialect.driver == "psycopg":
            # In binary: as text a bytea travels hex-encoded (twice its size, encoded by the server, decoded by
            # psycopg), and downloads ran at less than half the speed (bench/attachments.py).
            with conn.connection.driver_connection.cursor(binary=True) as cursor:
                row = cursor.execute(_PG_CHUNK, (sha256, seq)).fetchone()
            return None if row is None else row[0]
        return conn.execute(_CHUNK, {"sha256": sha256, "seq": seq}).scalar()


def read(sha256: str, start: int, stop: int, chunk_size: int = CHUNK_SIZE, engine=None) -> Iterator[bytes]:
    """Bytes ``start`` to ``stop`` (exclusive) of a blob, one chunk per query on a connection held only
    for that query, so a slow download holds no database connection while the client reads. Pass the
    engine when the bytes are read after the request's app context is gone (a streamed response)."""
    if stop <= start:
        return
    engine = engine if engine is not None else db.engine
    first, last = start // chunk_size, (stop - 1) // chunk_size
    for seq in range(first, last + 1):
        data = _chunk(engine, sha256, seq)
        if data is None:  # the blob was deleted mid-download: end the body short rather than pad it
            return
        lo = start - seq * chunk_size if seq == first else 0
        hi = stop - seq * chunk_size if seq == last else len(data)
        yield bytes(data[lo:hi]) if (lo, hi) != (0, len(data)) else bytes(data)


def unused_blobs():
    """Blobs nothing points at: no attachment as its file or thumbnail, no inbound message as its .eml."""
    raw = table("inbound_messages", column("raw_sha256"))  # by name: the store does not import the channel
    return select(Blob.sha256).where(~exists().where(Attachment.sha256 == Blob.sha256),
                                     ~exists().where(Attachment.thumbnail_sha256 == Blob.sha256),
                                     ~exists().where(raw.c.raw_sha256 == Blob.sha256))


def delete_unused() -> int:
    """Delete every blob no attachment points at, its chunks with it, in one statement; returns how many.

    Blobs an upload holds locked are skipped (PostgreSQL's SKIP LOCKED). An attachment committed between
    this statement's snapshot and its delete makes the foreign key refuse it: then the pass runs again."""
    candidates = unused_blobs()
    if db.session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    for attempt in range(3):
        try:
            count = db.session.execute(delete(Blob).where(Blob.sha256.in_(candidates))
                                       .execution_options(synchronize_session=False)).rowcount
            db.session.commit()
            return count
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
    return 0  # pragma: no cover
