"""Callback XML read once into its fields, refusing any DTD.

Both documents of a callback — the envelope as POSTed and the message inside
``<Encrypt>`` — are flat: an ``<xml>`` root with one child element per field,
holding text or CDATA (docs/wecom-api.md §1.2, §3). Nothing reads deeper, so
each document is read once, straight into ``{field: text}``, with no tree.

Why not defusedxml (what this replaced): its ElementTree re-imports the
pure-Python ``XMLParser`` to hook expat, and two such parses were 33 µs of a
57 µs callback. Now a document of exactly WeCom's flat shape (``_flat_fields``)
is read by one C regex scan, and every other document by expat, with the
safety done directly on expat: callback bodies arrive from the internet
before (envelope) and after (message) authentication and never carry a DTD,
so a DOCTYPE is refused the moment it starts. Without a DTD nothing can
declare an entity, so no external reference (XXE) and no expansion
("billion laughs") is possible; an undeclared ``&name;`` is a
well-formedness error. The fast path accepts no DTD, no reference and no
markup but its fields, so it cannot let through what expat refuses
(tests/test_callback_xml.py checks it against ElementTree).
"""

from __future__ import annotations

import re
from typing import Final
from xml.parsers import expat

from alertbridge.messengers.wecom.callback_errors import MalformedMessage

_ROOT: Final = "xml"

# The shape of every callback document WeCom sends: <xml>, then fields whose
# content is one CDATA section or plain text (no markup, no reference, no
# "]"), between ASCII tags, without attributes or declarations, and only
# characters XML allows (after a strict UTF-8 decode: no C0 control but tab
# and newline, no U+FFFE/U+FFFF) and no "\r" (which XML turns into "\n").
# Any document of that shape is well-formed XML with no DTD and no entity,
# and its fields read the same as expat reads them; it is read by two C
# regex scans instead of ~20 Python handler calls (7 µs → 2-3 µs a
# document). Everything else — other shapes, hostile or broken documents —
# goes to expat.
_CONTROLS = "\x00-\x08\x0b-\x1f"
_CDATA = rf"<!\[CDATA\[([^\]{_CONTROLS}]*+(?:\](?!\]>)[^\]{_CONTROLS}]*+)*+)\]\]>"
_FIELD = rf"[ \t\n]*+<([A-Za-z_][A-Za-z0-9_]*+)>(?:{_CDATA}|([^<&\]{_CONTROLS}]*+))</\1>"
_FIELDS: Final = re.compile(_FIELD)
_OPEN, _CLOSE = "<xml>", "</xml>"


def _flat_fields(data: bytes) -> dict[str, str] | None:
    """The fields of a document of WeCom's flat shape, or None for any other document.

    One scan: ``split`` on the field pattern leaves, between the fields it
    found, only empty gaps for a document of that shape (and whitespace
    after the last); any other gap is something else.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\ufffe" in text or "\uffff" in text:  # kept out of the classes above: they would slow them
        return None
    body = text.rstrip(" \t\n")
    if not (body.startswith(_OPEN) and body.endswith(_CLOSE)):
        return None
    parts = _FIELDS.split(body[len(_OPEN) : -len(_CLOSE)])
    # [gap, tag, cdata, text, gap, tag, cdata, text, ..., tail]
    if parts[-1].strip(" \t\n") or any(parts[0:-1:4]):
        return None
    fields: dict[str, str] = {}
    for index in range(1, len(parts), 4):
        fields.setdefault(parts[index], parts[index + 1] or parts[index + 2] or "")
    return fields


class _Refused(Exception):
    """A DTD or entity declaration: raised from an expat handler, ends the parse."""


def _refuse_dtd(*_: object) -> None:
    raise _Refused("DTD")


def _refuse_entity(*_: object) -> None:
    raise _Refused("entity declaration")


def _refuse_external(*_: object) -> int:
    raise _Refused("external entity")


class _Fields:
    """expat handlers collecting the direct text of the root's children (the first of each name).

    Lean on purpose (three small handlers, no tree): they run for every
    element of every callback. Text inside a grandchild is not its parent's
    text; the fields WeCom documents have no children, and those it nests
    (vote options …) are ignored like any unknown field.
    """

    __slots__ = ("depth", "fields", "root", "text")

    def __init__(self) -> None:
        self.depth = 0
        self.root = ""
        self.text = ""
        self.fields: dict[str, str] = {}

    def start(self, name: str, _attributes: object) -> None:
        self.depth += 1
        if self.depth == 2:
            self.text = ""
        elif self.depth == 1:
            self.root = name

    def end(self, name: str) -> None:
        if self.depth == 2 and name not in self.fields:
            self.fields[name] = self.text
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.depth == 2:
            self.text += text


def xml_fields(data: bytes, what: str) -> dict[str, str]:
    """The fields of a callback document: ``{child tag: its text}``, "" for an empty element.

    ``what`` names the document in the error reason ("envelope", "message").

    Raises:
        MalformedMessage: not well-formed XML, a DTD (and so any entity
            declaration or external reference), or a root other than ``<xml>``.
    """
    flat = _flat_fields(data)
    if flat is not None:
        return flat
    fields = _Fields()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.StartElementHandler = fields.start
    parser.EndElementHandler = fields.end
    parser.CharacterDataHandler = fields.data
    try:
        parser.Parse(data, True)
    except _Refused as exc:
        raise MalformedMessage(f"{what} XML refused: {exc} not allowed") from None
    except expat.ExpatError as exc:
        # "not well-formed (invalid token): line 1, column 5": positions, no content.
        raise MalformedMessage(f"{what} XML does not parse: {exc}") from None
    if fields.root != _ROOT:
        raise MalformedMessage(f"{what} root element is not <xml>")
    return fields.fields
