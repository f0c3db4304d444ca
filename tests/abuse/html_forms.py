"""The forms of a rendered page, read with the standard library's html.parser like a browser would."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

TEXT_TYPES = {"text", "search", "email", "password", "number", "date", "datetime-local", "time", "url", "tel",
              "hidden", "month", "week", "range", "color"}


@dataclass
class Field:
    name: str
    kind: str  # an input type, "select", "textarea"
    values: list[str] = field(default_factory=list)  # what the browser would send as the page left it
    options: list[str] = field(default_factory=list)  # the choices of a select, radio group or checkbox group
    multiple: bool = False

    @property
    def choice(self) -> bool:
        """A closed set of values: anything else must be refused."""
        return self.kind in ("select", "radio", "checkbox") and bool(self.options)


@dataclass
class HtmlForm:
    method: str
    action: str  # absolute path (and query) the form submits to
    fields: dict[str, Field] = field(default_factory=dict)

    def add(self, f: Field) -> None:
        known = self.fields.get(f.name)
        if known is None:
            self.fields[f.name] = f
        else:  # a radio or checkbox group, or a field repeated in the markup
            known.options += f.options
            known.values += f.values

    def pairs(self, overrides: dict[str, list[str]] | None = None) -> list[tuple[str, str]]:
        """The body a browser would submit, with some fields' values replaced."""
        overrides = overrides or {}
        out = []
        for name, f in self.fields.items():
            for value in overrides.get(name, f.values):
                out.append((name, value))
        return out


class _Parser(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_url = page_url
        self.forms: list[HtmlForm] = []
        self.links: list[str] = []
        self.classes: set[str] = set()  # every class name on the page ("pager": a paged list)
        self._form: HtmlForm | None = None
        self._select: Field | None = None
        self._option: dict | None = None
        self._textarea: Field | None = None
        self._text: list[str] = []
        self._group: HtmlForm | None = None  # a fieldset whose fields the page's script sends as a query
        self._group_depth = 0

    def _containers(self) -> list[HtmlForm]:
        return [c for c in (self._form, self._group) if c is not None]

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.classes.update(a.get("class", "").split())
        if tag == "a" and "href" in a:
            self.links.append(urljoin(self.page_url, a["href"]))
        elif tag == "form":
            action = urljoin(self.page_url, a.get("action") or self.page_url)
            parts = urlsplit(action)
            self._form = HtmlForm((a.get("method") or "get").lower(),
                                  parts.path + (f"?{parts.query}" if parts.query else ""))
        elif tag == "fieldset" and a.get("data-preview-url") is not None:
            self._group = HtmlForm("get", urljoin(self.page_url, a["data-preview-url"]))
            self._group_depth = 1
        elif tag == "fieldset" and self._group is not None:
            self._group_depth += 1
        elif tag == "input" and a.get("name"):
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio"):
                value = a.get("value", "on")
                f = Field(a["name"], kind, [value] if "checked" in a else [], [value])
            else:
                f = Field(a["name"], kind if kind in TEXT_TYPES else "text", [a.get("value", "")])
            for container in self._containers():
                container.add(f if container is self._form else Field(f.name, f.kind, list(f.values),
                                                                      list(f.options)))
        elif tag == "select" and a.get("name"):
            self._select = Field(a["name"], "select", multiple="multiple" in a)
        elif tag == "option" and self._select is not None:
            self._option = {"value": a.get("value"), "selected": "selected" in a}
            self._text = []
        elif tag == "textarea" and a.get("name"):
            self._textarea = Field(a["name"], "textarea")
            self._text = []

    def handle_data(self, data):
        if self._option is not None or self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "option" and self._option is not None and self._select is not None:
            value = self._option["value"]
            value = "".join(self._text).strip() if value is None else value
            self._select.options.append(value)
            if self._option["selected"]:
                self._select.values.append(value)
            self._option = None
        elif tag == "select" and self._select is not None:
            f = self._select
            if not f.values and f.options and not f.multiple:
                f.values = [f.options[0]]  # a browser sends the first option when none is selected
            for container in self._containers():
                container.add(Field(f.name, f.kind, list(f.values), list(f.options), f.multiple))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            for newline in ("\r\n", "\n"):  # HTML drops one newline right after <textarea>
                if text.startswith(newline):
                    text = text[len(newline):]
                    break
            self._textarea.values = [text]
            for container in self._containers():
                container.add(Field(self._textarea.name, "textarea", list(self._textarea.values)))
            self._textarea = None
        elif tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None
        elif tag == "fieldset" and self._group is not None:
            self._group_depth -= 1
            if self._group_depth == 0:
                self.forms.append(self._group)
                self._group = None


@dataclass
class Page:
    forms: list[HtmlForm]
    links: list[str]  # absolute addresses of its links
    paged: bool  # shows a pager: takes ``page``


def parse(html: str, page_url: str) -> Page:
    parser = _Parser(page_url)
    parser.feed(html)
    parser.close()
    return Page(parser.forms, parser.links, "pager" in parser.classes)


def form_body(pairs: list[tuple[str, str]]) -> bytes:
    """URL-encoded like a browser, except that lone surrogates go through as their raw (invalid) UTF-8 bytes."""
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode("ascii")
