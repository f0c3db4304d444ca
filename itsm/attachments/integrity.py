"""Attachments in a database reached by a plain DB-API connection (a backup's snapshot or its restored
scratch copy): how many and how large, and whether every file's chunks still reassemble to it."""

from __future__ import annotations

import hashlib

_STATS = "SELECT count(*), coalesce(sum(size), 0) FROM attachments"
# Every blob an attachment uses, as its file or its thumbnail.
_BLOBS = ("SELECT b.sha256, b.size, b.chunk_size FROM attachment_blobs b WHERE EXISTS "
          "(SELECT 1 FROM attachments a WHERE a.sha256 = b.sha256 OR a.thumbnail_sha256 = b.sha256) ORDER BY b.sha256")
_MISSING = ("SELECT count(*) FROM attachments a WHERE NOT EXISTS "
            "(SELECT 1 FROM attachment_blobs b WHERE b.sha256 = a.sha256)")
# What the attachments say a file's size is must be what its blob holds.
_SIZES = ("SELECT a.sha256, a.size, b.size FROM attachments a JOIN attachment_blobs b ON b.sha256 = a.sha256 "
          "WHERE a.size <> b.size")
_CHUNK = "SELECT data FROM attachment_chunks WHERE sha256 = {p} AND seq = {p}"
_COUNT = "SELECT count(*) FROM attachment_chunks WHERE sha256 = {p}"
MAX_REPORTED = 5


def _has_tables(conn) -> bool:
    try:
        conn.execute("SELECT 1 FROM attachments WHERE 1 = 0").fetchall()
    except Exception:  # noqa: BLE001 -- a backup from before attachments existed
        if hasattr(conn, "rollback"):
            conn.rollback()
        return False
    return True


def stats(conn) -> dict[str, int]:
    """{"count": attachments, "bytes": their total size} (a file attached twice counts twice)."""
    if not _has_tables(conn):
        return {"count": 0, "bytes": 0}
    count, total = conn.execute(_STATS).fetchone()
    return {"count": int(count), "bytes": int(total)}


def problems(conn, placeholder: str) -> list[str]:
    """What is wrong with the stored files (empty when every one reassembles to its size and SHA-256).
    ``placeholder`` is the driver's parameter mark: ``?`` for sqlite3, ``%s`` for psycopg."""
    if not _has_tables(conn):
        return []
    found = []
    missing = conn.execute(_MISSING).fetchone()[0]
    if missing:
        found.append(f"{missing} attachment(s) point at no stored file")
    chunk = _CHUNK.format(p=placeholder)
    count = _COUNT.format(p=placeholder)
    for sha256, recorded, size in conn.execute(_SIZES).fetchmany(MAX_REPORTED):
        found.append(f"file {sha256[:12]}: an attachment records {recorded} bytes for a {size}-byte file")
    for sha256, size, chunk_size in conn.execute(_BLOBS).fetchall():
        digest, total, reason = hashlib.sha256(), 0, None
        expected = -(-size // chunk_size)
        for seq in range(expected):  # one chunk in memory at a time, however large the file
            row = conn.execute(chunk, (sha256, seq)).fetchone()
            if row is None:
                reason = f"chunk {seq} of {expected} is missing"
                break
            data = bytes(row[0])
            if len(data) != min(chunk_size, size - total):
                reason = f"chunk {seq} is {len(data)} bytes, not {min(chunk_size, size - total)}"
                break
            digest.update(data)
            total += len(data)
        if reason is None and conn.execute(count, (sha256,)).fetchone()[0] != expected:
            reason = f"it has more than its {expected} chunks"
        if reason is None and digest.hexdigest() != sha256:
            reason = "its chunks do not match its SHA-256 (a stored byte changed)"
        if reason:
            found.append(f"file {sha256[:12]}: {reason}")
        if len(found) >= MAX_REPORTED:
            break
    return found
