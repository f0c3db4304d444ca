"""One raw email in, a `Parsed` out: pure functions, no app and no database.

Nothing in a message is trusted. Header fields are read from their raw source with our own decoding
(RFC 2047 words, RFC 2231 parameters, 8-bit bytes, charsets), so a field can neither crash the parse nor
smuggle a line break into a one-line value; the standard library's ``email`` package (``policy.default``,
``policy.compat32`` when that fails) only cuts the MIME tree. Every step is linear in the message's size:
the standard library's own MIME parameter parsing is quadratic (a 4 KB Content-Type took 70 ms), so the
three headers the tree is cut by reach it in a short canonical form, and the reply parser only ever sees
a bounded, defused head of the text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email import policy
from email._policybase import Compat32
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import parsedate_to_datetime
from html import unescape as html_unescape

import inscriptis
from mailparser_reply import EmailMessage as _ReplyParser

__all__ = ["NO_SUBJECT", "TOKEN_RE", "ParseError", "Part", "Parsed", "clean_subject", "parse"]

NO_SUBJECT = "(no subject)"
TOKEN_RE = re.compile(r"\[ref:([A-Za-z0-9_.\-]{8,200})\]")
MISSING_ID_DOMAIN = "itsm.invalid"
MAX_ID_LENGTH = 250  # longer Message-IDs are hashed: every id fits an indexed column and compares the same way
MAX_REFERENCES = 100  # the thread's root and the newest ids are what a reply is matched by
MAX_DEPTH = 40  # MIME nesting deeper than this is not looked into (no real client nests more than ~6)
REPLY_SCAN_CHARS = 32_000  # the reply parser reads this much of the top of the text
_REPLY_LINE_HIDDEN = 160  # longer lines are hidden from the reply parser: its per-line patterns are quadratic
_REPLY_LANGUAGES = ("en", "de", "fr", "nl", "es", "it")
_SIGNOFF_MAX = 40  # a "Thanks, ..." line longer than this is text, not the start of a signature
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
_PRECEDENCE_AUTO = frozenset(("bulk", "junk", "list", "auto_reply"))


class ParseError(ValueError):
    """The bytes are not an email message at all (empty, or no header)."""


@dataclass(frozen=True)
class Part:
    """An attachment or an inline image."""

    filename: str  # decoded (RFC 2231/2047), may be "": the caller names it
    content_type: str  # as declared, lower case
    data: bytes
    inline: bool  # Content-Disposition inline, or an image referenced by Content-ID


@dataclass(frozen=True)
class Parsed:
    """One message. Every str but ``text`` and ``reply_text`` is one line (no CR, LF or NUL), and every
    str can be stored (no lone surrogates)."""

    message_id: str  # without <>; when missing or empty "sha256-<hex>@itsm.invalid" (see _fallback_id)
    message_id_missing: bool
    in_reply_to: tuple[str, ...]  # ids without <>
    references: tuple[str, ...]  # at most MAX_REFERENCES: the first and the newest
    sender: str  # the From address, lower case ("" when there is none)
    sender_name: str
    reply_to: str | None  # the first Reply-To address, lower case
    recipients: tuple[str, ...]  # To and Cc addresses, lower case, once each
    subject: str  # decoded, one line, full length
    clean_subject: str  # without Re:/Fwd:/AW:/... chains and ticket tags; "(no subject)" when empty
    ticket_ref: int | None  # the number of the last ticket tag in the subject
    text: str  # the body as text: text/plain preferred, else HTML converted; \n line ends
    reply_text: str  # text without quoted history and signature; all of text when that leaves nothing
    attachments: tuple[Part, ...]  # attachments and inline images; nested messages as "<subject>.eml"
    date: datetime | None  # aware, UTC
    auto_reason: str | None  # "auto-submitted", "precedence", "auto-reply header", "read receipt" or None
    is_bounce: bool  # a delivery status notification, or mail from MAILER-DAEMON (postmaster: with a report)
    bounced_message_id: str | None  # the Message-ID of the message a bounce returns, without <>
    tokens: tuple[str, ...]  # every [ref:...] token in the text and body parts, in order, once each
    warnings: tuple[str, ...]  # what was repaired
    size: int  # len(raw)


# --- text hygiene -------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_WHITESPACE = re.compile(r"\s")
# C0/C1 controls (NUL, ESC, ...) and the bidirectional overrides and isolates that make text read
# differently from what it is.
_ONE_LINE_DROP = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MULTI_LINE_DROP = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n (CRs are gone by then)


def _no_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _one_line(text: str) -> str:
    """One line of text: every line break, tab or other space a plain space, control characters gone."""
    text = _WHITESPACE.sub(" ", _no_surrogates(text))
    return _ONE_LINE_DROP.sub("", text).strip()


def _multi_line(text: str) -> str:
    """Text with \\n line ends only and no control characters but tabs."""
    text = _no_surrogates(text).replace("\r\n", "\n").replace("\r", "\n")
    return _MULTI_LINE_DROP.sub("", text)


# --- charsets -----------------------------------------------------------------------------------------

# Labels mail clients send that Python does not know, or knows as a narrower charset than they mean.
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8", "iso-8859-8-e": "iso-8859-8", "iso-8859-6-i": "iso-8859-6",
    "iso-8859-6-e": "iso-8859-6", "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "windows-874": "cp874", "x-mac-roman": "mac-roman", "macintosh": "mac-roman", "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp", "ks_c_5601-1987": "cp949", "unicode-1-1-utf-7": "utf-7", "utf8mb4": "utf-8",
}
# Codecs that are not a mail charset: slow on long input (punycode is quadratic) or not text at all.
_UNSAFE_CODECS = frozenset(("punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"))
# As in browsers (WHATWG Encoding): iso-8859-1 and us-ascii labels mean windows-1252.
_WINDOWS_1252 = frozenset(("iso8859-1", "cp1252"))


@functools.lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """Python's codec name for a charset label, or None when there is no usable one."""
    if not label or len(label) > 64:
        return None
    label = _CHARSET_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
        b"".decode(name)  # LookupError for the bytes-to-bytes codecs (base64, zlib, ...)
    except (LookupError, ValueError, TypeError):
        return None
    return None if name in _UNSAFE_CODECS else name


def _charset_label(charset: str | None) -> str:
    return _one_line(charset or "").strip("\"' ").lower()


def decode_bytes(data: bytes, charset: str | None, warn=None) -> str:
    """Text of ``data`` in ``charset``: never fails. ``warn`` is told what was repaired."""
    warn = warn or (lambda message: None)
    label = _charset_label(charset)
    shown = label[:40]
    if not label:
        name = "ascii"  # RFC 2045's default
    else:
        name = _codec(label)
        if name is None:
            warn(f"unknown charset {shown} replaced")
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("cp1252", "replace")
    if name == "ascii":
        if data.isascii():
            return data.decode("ascii")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            warn(f"8-bit text declared {shown or 'us-ascii'} decoded as latin-1")
            return data.decode("cp1252", "replace")
        warn(f"8-bit text declared {shown or 'us-ascii'} decoded as UTF-8")
        return text
    if name in _WINDOWS_1252:
        return data.decode("cp1252", "replace")
    try:
        return data.decode(name)
    except (UnicodeError, LookupError, ValueError, TypeError):
        pass
    if name != "utf-8":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            warn(f"wrong charset {shown}: text decoded as UTF-8")
            return text
    warn(f"wrong charset {shown}: undecodable bytes replaced")
    try:
        return data.decode(name, "replace")
    except (UnicodeError, LookupError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


# --- header fields ------------------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,80})\?([bBqQ])\?([^?\s]*)\?=")
_NOT_BASE64_BYTES = re.compile(rb"[^A-Za-z0-9+/]")


def _lenient_b64(data: bytes) -> bytes:
    data = _NOT_BASE64_BYTES.sub(b"", data)
    if len(data) % 4 == 1:
        data = data[:-1]
    return base64.b64decode(data + b"=" * (-len(data) % 4))


def _word_bytes(encoding: str, text: str) -> bytes | None:
    if encoding in "bB":
        try:
            return _lenient_b64(text.encode("ascii", "replace"))  # a dangling sixth of a byte is dropped
        except (binascii.Error, ValueError):
            return None
    try:
        return binascii.a2b_qp(text.encode("utf-8", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None


def decode_words(value: str, warn=None) -> str:
    """``value`` with its RFC 2047 encoded words decoded; adjacent words of one charset are decoded
    together (a character may be split between them) and the space between words is dropped."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    previous_was_word = False
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position:match.start()]
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 section 5: charset*language
        data = _word_bytes(match.group(2), match.group(3))
        joined = previous_was_word and data is not None and not between.strip(" \t\r\n")
        if pending is not None and not (joined and charset.lower() == pending[0].lower()):
            out.append(decode_bytes(bytes(pending[1]), pending[0], warn))
            pending = None
        if not joined:
            out.append(between)
        if data is None:
            out.append(match.group(0))  # not decodable: it stays as it was written
        elif pending is None:
            pending = (charset, bytearray(data))
        else:
            pending[1].extend(data)
        previous_was_word = data is not None
        position = match.end()
    if pending is not None:
        out.append(decode_bytes(bytes(pending[1]), pending[0], warn))
    out.append(value[position:])
    return "".join(out)


# MIME parameters: name=value or name="quoted", split at semicolons outside quotes.
_PARAM = re.compile(r';\s*([^=;\s"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)
_SECTION = re.compile(r"^(.*?)\*(\d{1,3})(\*?)$|^(.*?)(\*)$")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_MAX_PARAMS = 200


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _unpercent(text: str) -> bytes:
    return _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8", "surrogateescape"))


def mime_params(value: str, warn=None) -> tuple[str, dict[str, str]]:
    """The main value (lower case) and the parameters (names lower case) of a Content-Type or
    Content-Disposition field, with RFC 2231 sections and charsets decoded. Linear in the length."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[bool, str]]] = {}
    for count, match in enumerate(_PARAM.finditer(";" + rest if rest else "")):
        if count >= _MAX_PARAMS:
            break
        name, raw = match.group(1).lower(), match.group(2)
        section = _SECTION.match(name)
        if section is None:
            params.setdefault(name, _unquote(raw))
        elif section.group(1) is not None:  # name*0, name*1*, ...
            sections.setdefault(section.group(1), {}).setdefault(
                int(section.group(2)), (bool(section.group(3)), _unquote(raw)))
        else:  # name*=charset'language'percent-encoded
            sections.setdefault(section.group(4), {}).setdefault(0, (True, _unquote(raw)))
    for name, parts in sections.items():
        charset, data = "", bytearray()
        for index in sorted(parts):
            extended, text = parts[index]
            if extended and index == 0 and text.count("'") >= 2:
                charset, _, text = text.split("'", 2)
            data.extend(_unpercent(text) if extended else text.encode("utf-8", "surrogateescape"))
        params[name] = decode_bytes(bytes(data), charset or "utf-8", warn)  # the *-form beats the plain one
    return main.strip().lower(), params


# The fields the MIME tree is cut by reach the standard library in a short canonical form (its own
# parameter parsing is quadratic in a field's length); everything else is read raw by the code below.
_NOT_TOKEN = re.compile(r"[^\x21-\x7e]")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,100}/[a-z0-9!#$&^_.+-]{1,100}")
_KEPT_PARAMS = ("boundary", "charset", "report-type", "type", "start", "format", "delsp")


@functools.lru_cache(maxsize=2048)
def _canonical_field(name: str, value: str) -> str:
    main, params = mime_params(_UNFOLD.sub("", value))
    main = _NOT_TOKEN.sub("", main)[:200]  # "\x00multipart/mixed" is still read as multipart/mixed
    if name != "content-type":
        return main
    kept = [f'{key}="{params[key][:200]}"' for key in _KEPT_PARAMS
            if key in params and '"' not in params[key] and "\\" not in params[key]]
    return "; ".join([main, *kept])


class _Canonical:
    _FIELDS = frozenset(("content-type", "content-disposition", "content-transfer-encoding"))

    def header_fetch_parse(self, name, value):
        key = name.lower()
        if key in self._FIELDS and isinstance(value, str):
            return (_canonical_field if len(value) <= 4096 else _canonical_field.__wrapped__)(key, value)
        return super().header_fetch_parse(name, value)


class _DefaultPolicy(_Canonical, EmailPolicy):
    """policy.default, with the MIME structure fields as canonical strings."""


class _CompatPolicy(_Canonical, Compat32):
    """policy.compat32, likewise."""


_DEFAULT = _DefaultPolicy()
_COMPAT = _CompatPolicy()
_GENERATE = policy.compat32.clone(max_line_length=None)  # writes headers back as they came (no refolding)


# Addresses: quoted strings, comments, angle addresses, separators and the plain text between them.
_ADDRESS_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?|<[^<>]*>?|[,;:]|[^",;:<(]+', re.DOTALL)
_ADDRESS_BAD = frozenset('<>(),;"\\')
_MAX_ADDRESS_FIELD = 256 * 1024


def _clean_address(address: str) -> str:
    address = address.strip().strip("<>").strip()
    if address.lower().startswith("mailto:"):
        address = address[7:]
    if ":" in address:  # an obsolete source route, <@relay:user@host>
        address = address.rsplit(":", 1)[1]
    address = address.strip().lower()
    if "@" not in address and address not in _BOUNCE_SENDERS:
        return ""  # a name, not an address (mail daemons may write theirs without a domain)
    if (len(address) > 320 or address.count("@") > 1 or address.startswith("@")
            or address.endswith("@") or any(ch.isspace() or not ch.isprintable() or ch in _ADDRESS_BAD
                                            for ch in address)):
        return ""
    return address


def mailboxes(value: str, warn=None) -> list[tuple[str, str]]:
    """(display name, address) of each mailbox in an address field, addresses lower case ("" when a
    mailbox has none that is usable). An angle address always wins over what the name claims, so
    ``admin@corp <evil@x.org>`` is evil@x.org. Groups contribute their members."""
    value = value[:_MAX_ADDRESS_FIELD]
    found: list[tuple[str, str]] = []
    tokens: list[str] = []

    def flush():
        if not tokens:
            return
        angles = [t for t in tokens if t.startswith("<")]
        comments = [t[1:].removesuffix(")") for t in tokens if t.startswith("(")]
        if angles:
            address = angles[-1]
            name_tokens = [t for t in tokens[:tokens.index(address)] if not t.startswith(("(", "<"))]
        else:
            address = "".join(t for t in tokens if not t.startswith("(")).strip()
            name_tokens = []
        name = " ".join(_unquote(t) if t.startswith('"') else t for t in name_tokens)
        if not name.strip() and comments:
            name = comments[0]
        name = _one_line(decode_words(" ".join(name.split()), warn))
        cleaned = _clean_address(address)
        if cleaned or name:
            found.append((name, cleaned))
        tokens.clear()

    for match in _ADDRESS_TOKEN.finditer(value):
        item = match.group()
        if item in (",", ";"):
            flush()
        elif item == ":":
            tokens.clear()  # what came before was a group's name
        else:
            tokens.append(item)
    flush()
    return found


_ANGLE_ID = re.compile(r"<([^<>]*)>")


def _norm_id(raw: str, warn=None) -> str:
    text = "".join(_one_line(raw).split()).strip("<>")
    if len(text) > MAX_ID_LENGTH:
        if warn:
            warn("overlong Message-ID hashed")
        return f"sha256-{hashlib.sha256(text.encode('utf-8')).hexdigest()}@{MISSING_ID_DOMAIN}"
    return text


def message_ids(value: str, warn=None) -> list[str]:
    """The ids in a Message-ID, In-Reply-To or References field, without <>, in order, once each."""
    raw = _ANGLE_ID.findall(value) or [word for word in value.split() if "@" in word]  # brackets left out
    ids = [_norm_id(item, warn) for item in raw]
    return list(dict.fromkeys(item for item in ids if item))


# --- subjects -----------------------------------------------------------------------------------------

_REPLY_PREFIXES = re.compile(
    r"(?:\s?(?:re|fwd?|aw|wg|sv|vs|antw|antwort)(?:\s?(?:\[\d{1,6}\]|\(\d{1,6}\)|\^\d{1,6}))?\s?[:\uff1a])+",
    re.IGNORECASE)


@functools.lru_cache(maxsize=32)
def _tag_pattern(ticket_prefix: str) -> re.Pattern:
    return re.compile(r"\[" + re.escape(ticket_prefix) + r"(\d{1,18})\]", re.IGNORECASE)


def clean_subject(subject: str, ticket_prefix: str = "#") -> tuple[str, int | None]:
    """The subject without reply and forward prefixes and without our ticket tags ("(no subject)" when
    nothing is left), and the ticket number of the last tag (``[#123]`` for the prefix "#")."""
    if not ticket_prefix:
        raise ValueError("the ticket prefix must not be empty")
    tag = _tag_pattern(ticket_prefix)
    line = _one_line(subject)
    refs = tag.findall(line)
    rest = " ".join(tag.sub(" ", line).split())  # single spaces: the prefix pattern never backtracks far
    match = _REPLY_PREFIXES.match(rest)
    if match:
        rest = rest[match.end():]
    rest = rest.strip()
    return rest or NO_SUBJECT, int(refs[-1]) if refs else None


# --- bodies -------------------------------------------------------------------------------------------

HTML_LAYOUT_CHARS = 256 * 1024  # inscriptis is superlinear in inline elements: larger HTML gets plain text
_HIDDEN_HTML = re.compile(r"<(script|style|title|template)\b|<!--", re.IGNORECASE)
_BLOCK_TAG = re.compile(r"<(?:br|p|div|li|tr|h[1-6]|blockquote|pre|table|hr)\b[^<>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"\s+")
_LINE_SPACE = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")


def _rough_text(html: str) -> str:
    """The text of ``html`` without its markup, scripts, styles and comments (no layout); linear."""
    lower = html.lower()
    kept: list[str] = []
    position = 0
    while True:
        match = _HIDDEN_HTML.search(html, position)
        if match is None:
            kept.append(html[position:])
            break
        kept.append(html[position:match.start()])
        if match.group(1) is None:  # a comment
            end = html.find("-->", match.end())
            position = len(html) if end < 0 else end + 3
        else:  # unclosed, it hides the rest, as in a browser
            close = lower.find("</" + match.group(1).lower(), match.end())
            end = html.find(">", close) if close >= 0 else -1
            position = len(html) if end < 0 else end + 1
    text = _BLOCK_TAG.sub("\n", _SPACES.sub(" ", "".join(kept)))
    text = html_unescape(_ANY_TAG.sub("", text))
    return _BLANK_LINES.sub("\n\n", _LINE_SPACE.sub("\n", text)).strip()


def html_to_text(html: str, warn=None) -> str:
    """What a reader of ``html`` sees, as text (inscriptis); never its markup, scripts or styles."""
    html = _multi_line(html)
    if len(html) > HTML_LAYOUT_CHARS:
        if warn:
            warn(f"HTML of {len(html) // 1024} KiB converted to text without its layout")
        return _rough_text(html)
    try:
        return inscriptis.get_text(html)
    except Exception as exc:  # lxml refuses some documents
        if warn:
            warn(f"HTML not convertible by inscriptis ({type(exc).__name__}): converted without its layout")
        return _rough_text(html)


_PLACEHOLDER_BASE = 0xF0000  # Unicode's private-use plane 15: no mail has it
_PLACEHOLDER = re.compile("[\U000f0000-\U000ffffd]")
_SPACE_RUN = re.compile(r"\s{9,}")


def _hide(store: list[str], text: str) -> str:
    store.append(text)
    return chr(_PLACEHOLDER_BASE + len(store) - 1)


def _signature_is_text(signature: str) -> bool:
    first = signature.lstrip("> \n").split("\n", 1)[0].strip()
    return not first.startswith(("--", "__")) and len(first) > _SIGNOFF_MAX


def _drop_quoted_tail(text: str) -> str:
    """``text`` without a closing block of "> " quoted lines (and blank lines)."""
    end = len(text)
    dropped = False
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end].strip()
        if line and not line.startswith(">"):
            break
        dropped = dropped or bool(line)
        end = max(start - 1, 0)
    kept = text[:end].rstrip()
    return kept if dropped and kept else text


def strip_reply(text: str, warn=None) -> str:
    """The newest part of a reply: ``text`` without its quoted history and signature (mail-parser-reply
    over the top of the text), or all of ``text`` when that would leave nothing."""
    if not text.strip():
        return text
    head = text
    if len(text) > REPLY_SCAN_CHARS:
        cut = text.rfind("\n", 0, REPLY_SCAN_CHARS)
        head = text[:cut if cut > 0 else REPLY_SCAN_CHARS]
    if _PLACEHOLDER.search(head):
        return _drop_quoted_tail(text)
    # The parser's patterns backtrack over long lines and runs of spaces: it gets those as one
    # placeholder character each, and they are put back into what it returns.
    hidden: list[str] = []
    lines: list[str] = []
    blank = 0
    for line in head.split("\n"):
        line = line.strip()
        if not line:
            blank += 1
            if blank <= 2:
                lines.append("")
            continue
        blank = 0
        if len(line) > _REPLY_LINE_HIDDEN:
            line = _hide(hidden, line)
        elif _SPACE_RUN.search(line):
            line = _SPACE_RUN.sub(lambda m: _hide(hidden, m.group()), line)
        lines.append(line)
    reply = None
    try:
        message = _ReplyParser(text="\n".join(lines), languages=list(_REPLY_LANGUAGES),
                               keep_hyphen_lists=True).read()
        first = message.replies[0] if message.replies else None
    except Exception as exc:
        if warn:
            warn(f"reply parser failed ({type(exc).__name__}): the whole text is the reply")
        first = None
    if first is not None:
        body = first.content
        if first.headers:
            body = body.replace(first.headers, "", 1)
        cut = len(message.replies) > 1 or bool(first.headers)
        signature = first.signatures
        if signature and not _signature_is_text(signature) and body.rstrip().endswith(signature):
            body = body.rstrip()[:-len(signature)]
            cut = True
        if cut:
            reply = _PLACEHOLDER.sub(lambda m: hidden[ord(m.group()) - _PLACEHOLDER_BASE], body).strip()
    result = _drop_quoted_tail(reply if reply else text)
    return result if result.strip() else text


# --- the message --------------------------------------------------------------------------------------

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BYTES_SPACE = re.compile(rb"\s+")
_BODY_TYPES = ("text/plain", "text/html")
_NESTED_TYPES = ("message/rfc822", "message/global")
_HEADER_TYPES = ("text/rfc822-headers", "message/rfc822-headers")
_DEFECT_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def _defect_text(defect: object) -> str:
    name = type(defect).__name__.removesuffix("Defect")
    return _DEFECT_WORD.sub(" ", name).lower()


def _raw_values(part: Message, name: str) -> list[str]:
    name = name.lower()
    return [str(value) for key, value in part.raw_items() if key.lower() == name]


def _to_bytes(value: str) -> bytes:
    """A raw header value back as the bytes it was."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _fallback_id(raw: bytes, msg: Message) -> str:
    """The id of a message without one: the same message gives the same id however it arrived (line
    ends, folding, headers added on the way), another body or sender another."""
    digest = hashlib.sha256()
    for name in ("from", "to", "cc", "subject", "date"):
        values = [_BYTES_SPACE.sub(b" ", _to_bytes(value)).strip() for value in _raw_values(msg, name)]
        digest.update(name.encode() + b":" + b"\x1f".join(values) + b"\n")
    end = _HEADER_END.search(raw)
    body = raw[end.end():] if end else b""
    digest.update(b"\n" + body.replace(b"\r\n", b"\n").rstrip())
    return f"sha256-{digest.hexdigest()}@{MISSING_ID_DOMAIN}"


@dataclass
class _Piece:
    html: bool
    text: str


class _Run:
    """One parse: the warnings it gathers and the parts it finds."""

    def __init__(self, raw: bytes, ticket_prefix: str):
        self.raw = raw
        self.ticket_prefix = ticket_prefix
        self.notes: dict[str, None] = {}
        self.attachments: list[Part] = []
        self.seen: list[Message] = []
        self.token_sources: list[str] = []
        self.original_ids: list[str] = []
        self.has_report_part = False

    def warn(self, message: str) -> None:
        self.notes.setdefault(_one_line(message)[:300])

    # header fields

    def unbyte(self, value: str) -> str:
        """A raw header value with its 8-bit bytes (kept by the parser as surrogate escapes) decoded."""
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return _no_surrogates(value)
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError:
            self.warn("8-bit header bytes decoded as latin-1")
            return data.decode("cp1252", "replace")
        self.warn("8-bit header bytes decoded as UTF-8")
        return decoded

    def values(self, part: Message, name: str) -> list[str]:
        return [_UNFOLD.sub("", self.unbyte(value)) for value in _raw_values(part, name)]

    def first(self, part: Message, name: str) -> str | None:
        values = self.values(part, name)
        return values[0] if values else None

    def text_field(self, part: Message, name: str) -> str:
        value = self.first(part, name)
        return _one_line(decode_words(value, self.warn)) if value else ""

    def params(self, part: Message, name: str) -> tuple[str, dict[str, str]]:
        value = self.first(part, name)
        return mime_params(value, self.warn) if value else ("", {})

    def filename(self, part: Message) -> str:
        name = self.params(part, "content-disposition")[1].get("filename") or \
            self.params(part, "content-type")[1].get("name") or ""
        return _one_line(decode_words(name, self.warn))

    def addresses(self, part: Message, *names: str) -> list[tuple[str, str]]:
        return [box for name in names for value in self.values(part, name) for box in mailboxes(value, self.warn)]

    # the MIME tree

    def walk(self, part: Message, depth: int) -> list[_Piece]:
        """The body pieces of ``part`` in order; its attachments are collected on the way."""
        self.seen.append(part)
        ctype = part.get_content_type()
        if not _MIME_TYPE.fullmatch(ctype):
            ctype = "application/octet-stream"  # RFC 2046: what an unreadable type is taken for
        if ctype.startswith("message/"):
            self.message_part(part, ctype)
            return []
        if part.is_multipart():
            children = [child for child in part.get_payload() if isinstance(child, Message)]
            if depth >= MAX_DEPTH:
                self.warn(f"malformed MIME: nested deeper than {MAX_DEPTH} levels, the rest skipped")
                return []
            if ctype == "multipart/alternative":
                return self.choose([self.walk(child, depth + 1) for child in children])
            return [piece for child in children for piece in self.walk(child, depth + 1)]
        disposition = part.get_content_disposition()
        filename = self.filename(part)
        if part.get_content_maintype() == "multipart":  # its boundary never came: the body is text
            self.warn("malformed MIME: multipart without parts, its body kept as text")
            return [_Piece(False, self.part_text(part))]
        if ctype in _BODY_TYPES and disposition != "attachment" and not filename:
            piece = _Piece(ctype == "text/html", self.part_text(part))
            self.token_sources.append(piece.text)
            return [piece]
        data = part.get_payload(decode=True) or b""
        if ctype in _HEADER_TYPES:
            self.has_report_part = True
            self.original_ids.extend(self.ids_in_headers(data))
        has_cid = any(value.strip() for value in _raw_values(part, "content-id"))
        inline = disposition == "inline" or (disposition is None and has_cid)
        self.attachments.append(Part(filename, ctype, data, inline))
        return []

    def choose(self, options: list[list[_Piece]]) -> list[_Piece]:
        """multipart/alternative: the plain text when there is some, else the HTML, else the first."""
        def has(option, html):
            return any(piece.html is html and piece.text.strip() for piece in option)
        for html in (False, True):
            for option in options:
                if has(option, html):
                    return option
        return options[0] if options else []

    def message_part(self, part: Message, ctype: str) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
        if ctype == "message/delivery-status":
            self.has_report_part = True
            blocks = payload if isinstance(payload, list) else []
            data = b"\n".join(self.message_bytes(block) for block in blocks if isinstance(block, Message))
            self.attachments.append(Part(self.filename(part), ctype, data, False))
            return
        if inner is None:
            data = part.get_payload(decode=True) or b""
        else:
            data = self.message_bytes(inner)
            cte = (part.get("content-transfer-encoding") or "").lower()
            if cte in ("base64", "quoted-printable"):  # not allowed on message/rfc822, but sent: undo it
                data = _lenient_b64(data) if cte == "base64" else binascii.a2b_qp(data)
                inner = None
        if ctype in _NESTED_TYPES:
            if inner is None:
                inner = self.headers_of(data)
            if inner is not None:
                self.original_ids.extend(message_ids(self.first(inner, "message-id") or "", self.warn)[:1])
            subject = self.text_field(inner, "subject") if inner is not None else ""
            # Named by its subject (what a reader knows it by), not by a declared "ATT00001.eml".
            name = (subject[:200] or "message").replace("/", "-").replace("\\", "-") + ".eml"
            self.attachments.append(Part(name, ctype, data, False))
            return
        self.attachments.append(Part(self.filename(part), ctype, data, False))

    def message_bytes(self, msg: Message) -> bytes:
        try:
            return msg.as_bytes(policy=_GENERATE)
        except Exception:
            try:
                return msg.as_string(policy=_GENERATE).encode("utf-8", "surrogateescape")
            except Exception:
                self.warn("malformed MIME: a nested message could not be written out")
                return b""

    @staticmethod
    def headers_of(data: bytes) -> Message | None:
        try:
            return BytesParser(policy=_COMPAT).parsebytes(data, headersonly=True)
        except Exception:
            return None

    def ids_in_headers(self, data: bytes) -> list[str]:
        headers = self.headers_of(data)
        value = self.first(headers, "message-id") if headers is not None else None
        return message_ids(value, self.warn)[:1] if value else []

    def part_text(self, part: Message) -> str:
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            payload = part.get_payload()
            data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
        charset = self.params(part, "content-type")[1].get("charset")
        return _multi_line(decode_bytes(data, charset, self.warn))

    # the whole message

    def extract(self, msg: Message) -> Parsed:
        pieces = self.walk(msg, 0)
        texts = [html_to_text(piece.text, self.warn) if piece.html else piece.text for piece in pieces]
        text = "\n\n".join(t.strip("\n") for t in texts if t.strip()).strip()
        text = _multi_line(text)
        for part in self.seen:
            for defect in getattr(part, "defects", ()):
                self.warn("malformed MIME: " + _defect_text(defect))
        return self.finish(msg, text)

    def finish(self, msg: Message, text: str) -> Parsed:
        ids: list[str] = []
        id_fields = self.values(msg, "message-id")
        if len(id_fields) > 1:
            self.warn("duplicate Message-ID header")
        for value in id_fields:
            ids = message_ids(value, self.warn)
            if ids:
                break
        message_id = ids[0] if ids else _fallback_id(self.raw, msg)
        in_reply_to = [i for value in self.values(msg, "in-reply-to") for i in message_ids(value, self.warn)]
        references = list(dict.fromkeys(
            i for value in self.values(msg, "references") for i in message_ids(value, self.warn)))
        if len(references) > MAX_REFERENCES:
            self.warn(f"References cut to the first and the last {MAX_REFERENCES - 1}")
            references = references[:1] + references[-(MAX_REFERENCES - 1):]

        senders = [box for box in self.addresses(msg, "from") if box[1]]
        sender, sender_name = (senders[0][1], senders[0][0]) if senders else ("", "")
        if not senders and self.values(msg, "from"):
            self.warn("no usable From address")
            named = self.addresses(msg, "from")
            sender_name = named[0][0] if named else ""
        replies = [box[1] for box in self.addresses(msg, "reply-to") if box[1]]
        recipients = list(dict.fromkeys(box[1] for box in self.addresses(msg, "to", "cc") if box[1]))

        subject = self.text_field(msg, "subject")
        cleaned, ticket_ref = clean_subject(subject, self.ticket_prefix)

        ctype, ctype_params = self.params(msg, "content-type")
        report_type = ctype_params.get("report-type", "").lower()
        local_part = sender.split("@", 1)[0]
        is_bounce = (ctype == "multipart/report" and report_type == "delivery-status") or \
            local_part == "mailer-daemon" or (local_part in _BOUNCE_SENDERS and self.has_report_part)

        tokens = list(dict.fromkeys(
            token for source in (text, *self.token_sources) for token in TOKEN_RE.findall(source)))
        return Parsed(
            message_id=message_id,
            message_id_missing=not ids,
            in_reply_to=tuple(dict.fromkeys(in_reply_to)),
            references=tuple(references),
            sender=sender,
            sender_name=sender_name,
            reply_to=replies[0] if replies else None,
            recipients=tuple(recipients),
            subject=subject,
            clean_subject=cleaned,
            ticket_ref=ticket_ref,
            text=text,
            reply_text=strip_reply(text, self.warn),
            attachments=tuple(self.attachments),
            date=self.date(msg),
            auto_reason=self.auto_reason(msg, ctype, report_type),
            is_bounce=is_bounce,
            bounced_message_id=(self.original_ids[0] if self.original_ids else None) if is_bounce else None,
            tokens=tuple(tokens),
            warnings=tuple(self.notes),
            size=len(self.raw),
        )

    def date(self, msg: Message) -> datetime | None:
        value = self.first(msg, "date")
        if not value or not value.strip():
            return None
        try:
            when = parsedate_to_datetime(_one_line(value))
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        except Exception:  # the standard library raises several kinds for dates it cannot read
            self.warn("unreadable Date header")
            return None

    def auto_reason(self, msg: Message, ctype: str, report_type: str) -> str | None:
        for value in self.values(msg, "auto-submitted"):
            if _one_line(value).split(";", 1)[0].strip().lower() != "no":
                return "auto-submitted"
        for value in self.values(msg, "precedence"):
            if _one_line(value).strip().lower() in _PRECEDENCE_AUTO:
                return "precedence"
        if any(_raw_values(msg, name) for name in _AUTO_HEADERS):
            return "auto-reply header"
        if ctype == "multipart/report" and report_type == "disposition-notification":
            return "read receipt"
        return None

    def minimal(self, msg: Message) -> Parsed:
        """The fields of a message whose MIME tree could not be cut at all: its body as text."""
        self.attachments.clear()
        self.token_sources.clear()
        self.original_ids.clear()
        end = _HEADER_END.search(self.raw)
        body = self.raw[end.end():] if end else b""
        return self.finish(msg, _multi_line(decode_bytes(body, "utf-8", None)).strip())


def _headers_only(raw: bytes) -> Message:
    try:
        return BytesParser(policy=_COMPAT).parsebytes(raw, headersonly=True)
    except Exception:
        return Message()


def parse(raw: bytes, ticket_prefix: str = "#") -> Parsed:
    """Read one raw message. Raises ParseError only when ``raw`` is not a message at all; anything else
    is imported as well as it can be, with what was repaired in ``warnings``."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"a message is bytes, not {type(raw).__name__}")
    if not ticket_prefix:
        raise ValueError("the ticket prefix must not be empty")
    raw = bytes(raw)
    if not raw.strip():
        raise ParseError("empty message")
    errors: list[str] = []
    for message_policy in (_DEFAULT, _COMPAT):
        run = _Run(raw, ticket_prefix)
        try:
            msg = BytesParser(policy=message_policy).parsebytes(raw)
            if not msg.keys():
                raise ParseError("no header: not an email message")
            parsed = run.extract(msg)
        except ParseError:
            raise
        except Exception as exc:  # whatever a library raises, the next way is tried
            errors.append(_one_line(f"{type(exc).__name__}: {exc}")[:200])
            continue
        if errors:
            extra = (f"malformed MIME: policy.default failed ({errors[0]}), read with compat32",)
            return _with_warnings(parsed, extra)
        return parsed
    run = _Run(raw, ticket_prefix)
    msg = _headers_only(raw)
    if not msg.keys():
        raise ParseError("no header: not an email message")
    run.warn(f"malformed MIME: the structure could not be read ({errors[-1]}), body kept as raw text")
    return run.minimal(msg)


def _with_warnings(parsed: Parsed, extra: tuple[str, ...]) -> Parsed:
    return replace(parsed, warnings=tuple(dict.fromkeys(parsed.warnings + extra)))
