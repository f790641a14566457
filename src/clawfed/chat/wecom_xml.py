"""Safe parsing and building of WeCom's flat ``<xml><Field>value</Field>...</xml>`` documents."""

from __future__ import annotations

from collections.abc import Mapping
from xml.parsers import expat

from clawfed.chat.errors import MalformedXmlError

MAX_XML_BYTES = 1 << 20
"""Largest XML document accepted (WeCom callbacks are a few KiB)."""


class _FlatCollector:
    """Expat handlers collecting the text of the root element's direct children."""

    def __init__(self) -> None:
        self.depth = 0
        self.root: str | None = None
        self.fields: dict[str, str] = {}
        self._current: str | None = None
        self._parts: list[str] = []

    def start(self, name: str, _attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.root = name
        elif self.depth == 2:
            self._current = name
            self._parts = []

    def end(self, name: str) -> None:
        if self.depth == 2 and self._current == name:
            if name in self.fields:
                raise MalformedXmlError(f"XML field <{name}> must appear once, found it twice")
            self.fields[name] = "".join(self._parts)
            self._current = None
        self.depth -= 1

    def text(self, data: str) -> None:
        if self.depth == 2 and self._current is not None:
            self._parts.append(data)


def _refuse_dtd(*_args: object) -> None:
    raise MalformedXmlError("XML must not declare a DOCTYPE or entities (refused for safety)")


def parse_flat_xml(document: str | bytes, *, root: str = "xml") -> dict[str, str]:
    """Parse a flat WeCom XML document into ``{child tag: text}``.

    DOCTYPE declarations, entity declarations and documents above ``MAX_XML_BYTES`` are
    refused before any entity could expand. Nested elements below the root's children are
    allowed, but only the root's direct children are returned (their own text only).

    Parameters
    ----------
    document
        The XML text (or its UTF-8 bytes).
    root
        The required name of the root element.

    Returns
    -------
    dict[str, str]
        Child element name to its text (CDATA unwrapped).
    """
    raw = document.encode("utf-8") if isinstance(document, str) else document
    if len(raw) > MAX_XML_BYTES:
        raise MalformedXmlError(f"XML must be at most {MAX_XML_BYTES} bytes, got {len(raw)}")
    collector = _FlatCollector()
    parser = expat.ParserCreate(encoding="utf-8")
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd  # type: ignore[assignment]
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise MalformedXmlError(f"XML is not well formed: {exc}") from exc
    if collector.root != root:
        raise MalformedXmlError(f"XML root element must be <{root}>, got <{collector.root}>")
    return collector.fields


def cdata(text: str) -> str:
    """Wrap text in a CDATA section, splitting any ``]]>`` it contains."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_flat_xml(fields: Mapping[str, str | int]) -> str:
    """Build ``<xml>...</xml>`` with strings in CDATA and integers bare, in the given order."""
    parts = ["<xml>"]
    for name, value in fields.items():
        if not name.isidentifier():
            raise MalformedXmlError(f"XML field names must be identifiers, got {name!r}")
        body = str(value) if isinstance(value, int) else cdata(value)
        parts.append(f"<{name}>{body}</{name}>")
    parts.append("</xml>")
    return "".join(parts)


def require_field(fields: Mapping[str, str], name: str) -> str:
    """Return a required field's text or raise ``MalformedXmlError`` naming it."""
    try:
        return fields[name]
    except KeyError:
        raise MalformedXmlError(f"XML must contain a <{name}> element") from None
