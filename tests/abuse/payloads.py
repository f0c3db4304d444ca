"""Hostile values, named and generated (hypothesis strategies)."""

from __future__ import annotations

from hypothesis import strategies as st

SCRIPT = '<script>alert("itsm-xss")</script>'
IMG = '"><img src=x onerror=alert(1337)>'
ATTR = "' onmouseover='alert(7)' x='"
# None of these may ever appear in a response as written: each would run in the page.
MARKERS = (SCRIPT, IMG[2:], "onmouseover='alert(7)'")
# What the "template" value would render to if it reached Jinja as code. Not digits: a generated number
# echoed back in a page could contain them.
TEMPLATE_RESULT = "itsm-template-ran"

NAMED = {
    "script": SCRIPT,
    "img": IMG,
    "attr": ATTR,
    "sql-or": "' OR '1'='1' --",
    "sql-drop": "x'); DROP TABLE users; --",
    "sql-union": "1 UNION SELECT password_hash FROM users--",
    "like-wildcards": "%_%\\",
    "crlf-header": "someone@example.com\r\nBcc: victim@example.com",
    "crlf-cookie": "x\r\nSet-Cookie: itsm=evil",
    "lf-only": "line one\nline two",
    "nul": "before\x00after",
    "nul-only": "\x00",
    "control": "".join(chr(c) for c in range(1, 32)),
    "rtl-override": "\u202egpj.exe",
    "zero-width": "a\u200b\u200c\u200d\ufeffb",
    "combining": "e" + "\u0301" * 200,
    "emoji": "\U0001f469\u200d\U0001f4bb\U0001f525" * 20,
    "astral": "\U0010ffff\U000e0001",
    "replacement": "\ufffd",
    "lone-surrogate": "\ud800",  # sent as the invalid UTF-8 bytes %ED%A0%80
    "low-surrogate-pair-broken": "x\udc00y",
    "unicode-digits": "\u00b2",  # isdigit() but not int()
    "arabic-digits": "\u0661\u0662",
    "fullwidth-digits": "\uff11\uff10",
    "huge-int": "9" * 400,
    "int64-overflow": str(2**63),
    "int32-overflow": str(2**31),
    "negative": "-1",
    "negative-huge": "-" + "9" * 40,
    "zero": "0",
    "float": "1.5",
    "float-exp": "1e309",
    "nan": "NaN",
    "inf": "-Infinity",
    "hex": "0x1F",
    "empty": "",
    "spaces": " \t \u00a0\u3000 ",
    "overlong": "A" * 70_000,
    "overlong-unicode": "\u00e9" * 30_000,
    "path-traversal": "../../../../etc/passwd",
    "format-string": "%s%s%n{0}{.__class__}",
    "template": "{{ 'itsm-' ~ 'template-' ~ 'ran' }}{% raw %}",
    "json-nested": "[" * 5000 + "]" * 5000,
    "json-open": "{" * 20000,
    "json-proto": '{"__proto__": {"admin": true}}',
    "dates-bad": "2024-02-30",
    "date-year-zero": "0000-01-01",
    "date-max": "9999-12-31",
    "datetime-max": "9999-12-31T23:59",
    "datetime-min": "0001-01-01T00:00",
    "email-long": "x" * 300 + "@example.com",
    "email-quoted": '"a\\"b"@example.com',
    "url-javascript": "javascript:alert(1)",
    "redirect-external": "//evil.example/",
    "tz-bad": "Mars/Olympus_Mons",
    "tz-traversal": "../../etc/localtime",
}

# The ones every field gets in turn (one of each kind); hypothesis draws from all of NAMED.
SWEEP = tuple(NAMED[name] for name in (
    "script", "img", "attr", "sql-drop", "like-wildcards", "crlf-header", "nul", "control", "rtl-override",
    "combining", "emoji", "lone-surrogate", "unicode-digits", "arabic-digits", "huge-int", "int64-overflow",
    "negative", "float", "float-exp", "nan", "empty", "spaces", "overlong", "template", "json-nested", "dates-bad",
    "datetime-max", "datetime-min", "email-long", "tz-bad",
))

_characters = st.characters(codec=None, categories=("L", "M", "N", "P", "S", "Z", "C"))


def generated_text() -> st.SearchStrategy[str]:
    return st.text(_characters, max_size=300)


def hostile_values() -> st.SearchStrategy[str]:
    """One value to put where a well-behaved browser would put something sensible."""
    return st.one_of(
        st.sampled_from(list(NAMED.values())),
        generated_text(),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.tuples(generated_text(), st.sampled_from((SCRIPT, IMG, ATTR)), generated_text()).map("".join),
        st.dates().map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M")),
    )


def xss_reflected(body: str) -> str | None:
    """The first marker found raw in a response body."""
    return next((m for m in (*MARKERS, TEMPLATE_RESULT) if m in body), None)
