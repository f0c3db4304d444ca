"""File names and types of attachments: pure functions, no app."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itsm.attachments.detect import detect, looks_like_text
from itsm.attachments.names import MAX_LENGTH, clean_name, content_disposition


@pytest.mark.parametrize(("raw", "clean"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("/etc/shadow", "shadow"),
    ("C:\\Users\\pat\\Desktop\\screen shot.png", "screen shot.png"),
    ("a\x00b.txt", "ab.txt"),
    ("line\r\nbreak.txt", "line break.txt"),
    ("tab\there.txt", "tab here.txt"),
    ("invoice\u202egnp.exe", "invoicegnp.exe"),  # a right-to-left override would show it as "invoiceexe.png"
    ("zero\u200bwidth\ufeff.txt", "zerowidth.txt"),
    ("  spaced   out  .txt  ", "spaced out .txt"),
    ("trailing dots...", "trailing dots"),
    ("..", "attachment"), (".", "attachment"), ("", "attachment"), (None, "attachment"), ("/", "attachment"),
    (".bashrc", ".bashrc"),
    ("Cafe\u0301.txt", "Café.txt"),  # composed: the same name whichever way the browser spelled it
])
def test_clean_name(raw, clean):
    assert clean_name(raw) == clean


def test_a_long_name_is_cut_to_the_limit_keeping_its_extension():
    assert clean_name("a" * 10_000 + ".tar.gz") == "a" * (MAX_LENGTH - 3) + ".gz"
    assert len(clean_name("b" * 10_000)) == MAX_LENGTH
    assert len(clean_name("c" * 300 + "." + "x" * 40)) == MAX_LENGTH  # a long "extension" is not kept apart


@pytest.mark.parametrize(("name", "header"), [
    ("report.pdf", 'attachment; filename="report.pdf"'),
    ('say "hi".txt', "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"),
    ("back\\slash.txt", "attachment; filename=\"back_slash.txt\"; filename*=UTF-8''back%5Cslash.txt"),
    ("100%.txt", "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt"),
    ("Übersicht.pdf", "attachment; filename=\"Ubersicht.pdf\"; filename*=UTF-8''%C3%9Cbersicht.pdf"),
    ("日本語.txt", "attachment; filename=\"attachment.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt"),
])
def test_content_disposition_has_an_ascii_name_and_the_exact_one_in_utf8(name, header):
    assert content_disposition(name) == header


def test_inline_disposition():
    assert content_disposition("a.png", inline=True) == 'inline; filename="a.png"'


@given(st.text(max_size=400))
def test_any_name_gives_a_header_that_is_latin1_and_one_line(raw):
    header = content_disposition(clean_name(raw))
    header.encode("latin-1")
    assert "\r" not in header and "\n" not in header and header.count('"') == 2
    assert 0 < len(clean_name(raw)) <= MAX_LENGTH


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg"),
    (b"GIF89a" + b"\x00" * 64, "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 64, "image/webp"),
    (b"%PDF-1.7\n", "application/pdf"),
    (b"MZ\x90\x00" + b"\x00" * 64, "application/x-msdownload"),
    (b"<!doctype html><script>alert(1)</script>", "text/plain"),
    (b"<svg onload=alert(1)>", "text/plain"),
    ("Grüße, log line\n".encode(), "text/plain"),
    (b"\x00\x01\x02binary", "application/octet-stream"),
    (b"\xff\xfe\xfd not utf-8", "application/octet-stream"),
])
def test_the_type_comes_from_the_bytes(head, kind):
    assert detect(head) == kind


def test_text_cut_inside_a_character_is_still_text():
    assert looks_like_text("ab€".encode()[:-1])
    assert not looks_like_text(b"\xe2\x82 in the middle")
