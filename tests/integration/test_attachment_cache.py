"""Each web host's copy of downloaded files: filled by a whole download, used after that (the database
is asked only who may see it), never filled by a cut or partial one, bounded, and off when set to 0."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage

from itsm.attachments import service
from itsm.attachments.cache import Cache
from itsm.attachments.models import BlobChunk
from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories


@pytest.fixture
def app_config(tmp_path):
    return {"ATTACHMENT_CACHE_DIR": str(tmp_path / "cache"), "ATTACHMENT_CACHE_MB": 64}


def attach(content: bytes, name: str = "disk.img") -> tuple[int, int, str]:
    ticket = factories.make_ticket("Cached")
    [attachment] = service.attach(db.session.get(Ticket, ticket.id), [FileStorage(io.BytesIO(content), filename=name)],
                                  None)
    db.session.commit()
    return ticket.id, attachment.id, attachment.sha256


def fetched(client, url: str, **kwargs):
    """The response, read and closed: one served from the copy holds the open file until then."""
    response = client.get(url, **kwargs)
    response.get_data()
    response.close()
    return response


def test_a_whole_download_fills_the_cache_and_the_next_ones_come_from_it(app, client, auth, tmp_path):
    content = os.urandom(2 * 1048576 + 99)
    with app.app_context():
        tid, aid, sha = attach(content)
    auth.login()
    url = f"/tickets/{tid}/attachments/{aid}"
    part = fetched(client, url, headers={"Range": "bytes=0-99"})
    assert part.data == content[:100] and not (tmp_path / "cache" / sha[:2] / sha).exists()  # a part: no copy
    assert fetched(client, url).data == content
    copy = tmp_path / "cache" / sha[:2] / sha
    assert copy.read_bytes() == content
    with app.app_context():  # the database's bytes gone: the copy serves (the attachment row is still asked)
        db.session.execute(sa.delete(BlobChunk).where(BlobChunk.sha256 == sha))
        db.session.commit()
    assert fetched(client, url).data == content
    ranged = fetched(client, url, headers={"Range": "bytes=1048570-1048590"})
    assert ranged.status_code == 206 and ranged.data == content[1048570:1048591]
    with app.app_context():
        db.session.execute(sa.delete(Ticket).where(Ticket.id == tid))
        db.session.commit()
    assert fetched(client, url).status_code == 404  # removed: never served from the copy


def test_a_copy_of_the_wrong_size_is_dropped_and_a_cut_download_keeps_nothing(tmp_path):
    cache = Cache(tmp_path, 64 * 1048576)
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    cache.path(sha).parent.mkdir(parents=True)
    cache.path(sha).write_bytes(data[:10])
    assert cache.open(sha, len(data)) is None and not cache.path(sha).exists()
    chunks = cache.filling(sha, len(data), iter([data[:2000], data[2000:]]))
    next(chunks)
    chunks.close()  # the client went away after the first chunk
    assert not cache.path(sha).exists() and not list(cache.path(sha).parent.glob(".partial-*"))
    wrong = cache.filling(sha, len(data), iter([b"x" * 5000]))  # bytes that do not hash to the name
    assert b"".join(wrong) == b"x" * 5000 and not cache.path(sha).exists()
    assert b"".join(cache.filling(sha, len(data), iter([data]))) == data
    with cache.open(sha, len(data)) as handle:
        assert handle.read() == data


def test_the_cache_stays_within_its_limit_oldest_read_first(tmp_path):
    cache = Cache(tmp_path, 4 * 1048576)
    kept = []
    for n in range(8):
        data = os.urandom(900_000)
        sha = hashlib.sha256(data).hexdigest()
        assert b"".join(cache.filling(sha, len(data), iter([data]))) == data
        os.utime(cache.path(sha), (1_000_000 + n, 1_000_000 + n)) if n < 7 else None  # older, then newest
        kept.append(sha)
    present = [sha for sha in kept if cache.path(sha).exists()]
    assert sum(cache.path(sha).stat().st_size for sha in present) <= 4 * 1048576 * 0.9
    assert kept[-1] in present and kept[0] not in present


def test_no_cache_when_set_to_zero(app, client, auth, tmp_path):
    app.config["ATTACHMENT_CACHE_MB"] = 0
    content = os.urandom(1000)
    with app.app_context():
        tid, aid, sha = attach(content)
    auth.login()
    assert client.get(f"/tickets/{tid}/attachments/{aid}").data == content
    assert not (tmp_path / "cache").exists()
