"""BitDust's identity document: the frozen :class:`Identity` and its XML form.

The XML is the one BitDust writes (see ``reference/bitdust-identities``)::

    <?xml version="1.0" encoding="utf-8"?>
    <identity>
      <sources>
        <source>http://host-a.com:8084/alice.xml</source>
      </sources>
      <contacts>
        <contact>tcp://1.2.3.4:7771</contact>
      </contacts>
      <certificates/>
      <scrubbers/>
      <postage>1</postage>
      <date>Nov 25, 2026</date>
      <version>sources</version>
      <revision>1</revision>
      <publickey>ssh-rsa AAAA...</publickey>
      <signature>1570858920...</signature>
    </identity>

children exactly in that order, 2-space indent, no newline after ``</identity>``; the
``certificates`` and ``scrubbers`` lists hold ``certificate`` and ``scrubber`` elements. Our one
addition is the ``scheme`` attribute of ``signature``, which names a signature scheme other than
BitDust's (see :mod:`bitdust.identity.signing`); a document without it carries BitDust's legacy
signature. The signature is a decimal integer in both schemes.

:func:`parse_identity` treats its input as hostile: the size is checked before parsing (64 KiB);
any DOCTYPE is refused outright (so no DTD, no entity declarations: no billion laughs, no XXE); the
parser never resolves entities, never touches the network, never allows huge trees; nesting deeper
than ``identity/list/item`` is refused; unknown, missing, duplicated or out-of-order elements,
attributes, comments, processing instructions and text outside the leaves are refused. Every failure
is a :class:`~bitdust.identity.errors.DocumentError` (or another ``IdentityError``) with a message a
user can act on — never a parser exception. Parsing never verifies the signature: that is
:func:`bitdust.identity.signing.verify`'s job.

The parser is the standard library's expat (through ElementTree): with DOCTYPEs refused it has
nothing to resolve but the five predefined entities, and it costs a node 0.5 MiB of memory where
lxml cost 3.9 MiB (the issue's bound on an idle node is 60 MiB).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from xml.etree import ElementTree

from bitdust.identity.errors import DocumentError, IdentityError
from bitdust.identity.idurl import (
    Idurl,
    format_global_id,
    format_idurl,
    global_id_of,
    parse_idurl,
    printable,
    validate_name,
)
from bitdust.identity.keys import RSAPublicKey, public_key_from_openssh

__all__ = [
    "MAX_DOCUMENT_SIZE",
    "SCHEME_LEGACY",
    "SCHEME_PSS",
    "Identity",
    "Idurl",
    "format_date",
    "format_global_id",
    "format_idurl",
    "global_id_of",
    "parse_date",
    "parse_identity",
    "parse_idurl",
    "validate_name",
]

MAX_DOCUMENT_SIZE = 64 * 1024
MAX_DEPTH = 3  # identity / sources / source
MAX_SOURCES = 6
MAX_CONTACTS = 16
MAX_CERTIFICATES = 8
MAX_SCRUBBERS = 8
MAX_ITEM_LENGTH = 256
MAX_CERTIFICATE_LENGTH = 8192
MAX_VERSION_LENGTH = 128
MAX_SIGNATURE_DIGITS = 1300  # a 4096-bit signature has at most 1234 decimal digits

SCHEME_LEGACY = "bitdust-legacy"  # BitDust's scheme: written as no ``scheme`` attribute
SCHEME_PSS = "rsa-pss-sha256-v1"
SCHEMES = (SCHEME_LEGACY, SCHEME_PSS)

XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'

# Element order of BitDust's identity; list elements map to their item element's name.
ELEMENT_ORDER = (
    "sources",
    "contacts",
    "certificates",
    "scrubbers",
    "postage",
    "date",
    "version",
    "revision",
    "publickey",
    "signature",
)
LIST_ITEMS = {
    "sources": "source",
    "contacts": "contact",
    "certificates": "certificate",
    "scrubbers": "scrubber",
}

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_RE = re.compile(r"(" + "|".join(MONTHS) + r") ([0-9]{2}), ([0-9]{4})")
_CONTACT_RE = re.compile(r"[a-z][a-z0-9+.-]{0,15}://[!-~]+")
_TOKEN_RE = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_TEXT_RE = re.compile(r"[ -~]*")  # printable ASCII, spaces allowed
_POSTAGE_RE = re.compile(r"[0-9]{1,6}")
_SIGNATURE_RE = re.compile(r"0|[1-9][0-9]*")
_MAX_REVISION = 2**63 - 1
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"))

_XML_DECLARATION_RE = re.compile(r"<\?xml\b[^>]*?\bencoding\s*=\s*[\"']([^\"']*)[\"']")


def format_date(day: datetime.date) -> str:
    """BitDust's date form ``%b %d, %Y`` (``Nov 05, 2026``), independent of the locale."""
    return f"{MONTHS[day.month - 1]} {day.day:02d}, {day.year:04d}"


def parse_date(text: str) -> datetime.date:
    """Parse ``%b %d, %Y`` strictly (English month abbreviations, two-digit day)."""
    match = _DATE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise DocumentError(f"<date> {printable(text)} is not a date like 'Nov 25, 2026'")
    month, day, year = match.groups()
    try:
        return datetime.date(int(year), MONTHS.index(month) + 1, int(day))
    except ValueError:
        raise DocumentError(f"<date> {printable(text)} is not a real calendar date") from None


@dataclass(frozen=True, kw_only=True)
class Identity:
    """One identity document. Immutable; every field is validated on construction.

    ``signature`` is the decimal signature ("" when unsigned) and ``scheme`` the scheme it was (or
    will be) made with: :data:`SCHEME_LEGACY` or :data:`SCHEME_PSS`. Use
    :func:`bitdust.identity.signing.sign` to sign and :func:`dataclasses.replace` (or
    :meth:`replace`) to derive a changed copy.
    """

    sources: tuple[str, ...]
    contacts: tuple[str, ...] = ()
    certificates: tuple[str, ...] = ()
    scrubbers: tuple[str, ...] = ()
    postage: str = "1"
    date: str
    version: str = ""
    revision: int = 1
    publickey: str
    signature: str = ""
    scheme: str = SCHEME_PSS

    def __post_init__(self) -> None:
        for name in LIST_ITEMS:
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise DocumentError(f"<{name}> must be a list of strings")
            object.__setattr__(self, name, tuple(value))
        self._validate()

    # -- derived values --------------------------------------------------------------------------

    @property
    def idurl(self) -> str:
        """The primary IDURL (the first source)."""
        return self.sources[0]

    @cached_property
    def idurls(self) -> tuple[Idurl, ...]:
        """Every source, parsed."""
        return tuple(parse_idurl(source) for source in self.sources)

    @property
    def name(self) -> str:
        """The user name, the same in every source."""
        return self.idurls[0].name

    @property
    def global_id(self) -> str:
        """BitDust's global id of the primary IDURL (``alice@host-a.com_8084``)."""
        return self.idurls[0].global_id

    @cached_property
    def public_key(self) -> RSAPublicKey:
        """The RSA public key of ``publickey``."""
        return public_key_from_openssh(self.publickey)

    def replace(self, **changes: Any) -> Identity:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def unsigned(self) -> Identity:
        """A copy without signature (same scheme)."""
        return dataclasses.replace(self, signature="")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``identity/get`` returns), with the derived ids."""
        return {
            "idurl": self.idurl,
            "global_id": self.global_id,
            "name": self.name,
            "sources": list(self.sources),
            "contacts": list(self.contacts),
            "certificates": list(self.certificates),
            "scrubbers": list(self.scrubbers),
            "postage": self.postage,
            "date": self.date,
            "version": self.version,
            "revision": self.revision,
            "publickey": self.publickey,
            "signature": self.signature,
            "scheme": self.scheme,
        }

    def to_xml(self) -> bytes:
        """The document as BitDust writes it (see the module docstring), UTF-8 bytes."""
        lines = [XML_DECLARATION.decode("ascii"), "<identity>"]
        for name in ELEMENT_ORDER:
            if name in LIST_ITEMS:
                items = getattr(self, name)
                if not items:
                    lines.append(f"  <{name}/>")
                    continue
                lines.append(f"  <{name}>")
                item = LIST_ITEMS[name]
                lines.extend(f"    <{item}>{_escape(value)}</{item}>" for value in items)
                lines.append(f"  </{name}>")
            elif name == "signature" and self.scheme != SCHEME_LEGACY:
                lines.append(
                    f'  <signature scheme="{_escape(self.scheme)}">{self.signature}</signature>'
                )
            else:
                lines.append(f"  <{name}>{_escape(str(getattr(self, name)))}</{name}>")
        lines.append("</identity>")
        data = "\n".join(lines).encode("utf-8")
        if len(data) > MAX_DOCUMENT_SIZE:
            raise DocumentError(
                f"the identity document would be {len(data)} bytes; the limit is "
                f"{MAX_DOCUMENT_SIZE} (fewer or shorter certificates/contacts)"
            )
        return data

    # -- validation ------------------------------------------------------------------------------

    def _validate(self) -> None:
        self._validate_sources()
        check_contacts(self.contacts)
        _check_list(
            "certificates",
            self.certificates,
            MAX_CERTIFICATES,
            _TOKEN_RE,
            MAX_CERTIFICATE_LENGTH,
            "printable text without spaces",
        )
        _check_list(
            "scrubbers", self.scrubbers, MAX_SCRUBBERS, _TOKEN_RE, MAX_ITEM_LENGTH, "an IDURL"
        )
        if not isinstance(self.postage, str) or not _POSTAGE_RE.fullmatch(self.postage):
            raise DocumentError(f"<postage> {printable(self.postage)} is not a number like '1'")
        parse_date(self.date)
        if (
            not isinstance(self.version, str)
            or len(self.version) > MAX_VERSION_LENGTH
            or not _TEXT_RE.fullmatch(self.version)
        ):
            raise DocumentError(
                f"<version> {printable(self.version)} must be printable text of at most "
                f"{MAX_VERSION_LENGTH} characters"
            )
        if (
            isinstance(self.revision, bool)
            or not isinstance(self.revision, int)
            or not 0 <= self.revision <= _MAX_REVISION
        ):
            raise DocumentError(
                f"<revision> {printable(self.revision)} is not a non-negative integer"
            )
        try:
            public_key_from_openssh(self.publickey)
        except IdentityError as exc:
            raise DocumentError(f"<publickey>: {exc.message}") from None
        if (
            not isinstance(self.signature, str)
            or len(self.signature) > MAX_SIGNATURE_DIGITS
            or (self.signature and not _SIGNATURE_RE.fullmatch(self.signature))
        ):
            raise DocumentError(
                "<signature> must be a decimal integer without leading zeros "
                "(or empty when unsigned)"
            )
        if self.scheme not in SCHEMES:
            raise DocumentError(
                f"signature scheme {printable(self.scheme)} is not known (expected no scheme "
                f"attribute for BitDust's legacy signature, or '{SCHEME_PSS}')"
            )

    def _validate_sources(self) -> None:
        if not 1 <= len(self.sources) <= MAX_SOURCES:
            raise DocumentError(
                f"an identity needs 1-{MAX_SOURCES} <source> IDURLs, this one has "
                f"{len(self.sources)}"
            )
        parsed = []
        for source in self.sources:
            if not isinstance(source, str):
                raise DocumentError("<source> must be a string")
            try:
                parsed.append(parse_idurl(source))
            except IdentityError as exc:
                raise DocumentError(f"<source>: {exc.message}") from None
        names = {idurl.name for idurl in parsed}
        if len(names) != 1:
            raise DocumentError(
                "every <source> must carry the same name; found " + ", ".join(sorted(names))
            )
        servers = [idurl.server for idurl in parsed]
        if len(set(servers)) != len(servers):
            raise DocumentError("the same identity server appears twice among the <source>s")


def parse_identity(data: bytes) -> Identity:
    """Parse an identity XML document (untrusted input); raises only ``IdentityError``.

    The signature is not checked here.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DocumentError("an identity document must be given as bytes")
    data = bytes(data)
    if len(data) > MAX_DOCUMENT_SIZE:
        raise DocumentError(
            f"the identity document is {len(data)} bytes; the limit is {MAX_DOCUMENT_SIZE}"
        )
    if not data.strip():
        raise DocumentError("the identity document is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError("the identity document is not UTF-8 text") from None
    if "\x00" in text:  # also keeps UTF-16/32 documents (which hide "<!DOCTYPE") from the parser
        raise DocumentError("the identity document is not UTF-8 text (it contains NUL bytes)")
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise DocumentError(
            "the identity document contains a DOCTYPE or entity declaration; these are refused"
        )
    declared = _XML_DECLARATION_RE.match(text.lstrip())
    if declared and declared.group(1).upper() not in ("UTF-8", "UTF8"):
        raise DocumentError("the identity document must be encoded as UTF-8")
    builder = _Builder()
    parser = ElementTree.XMLParser(target=builder)
    try:
        parser.feed(data)
        root = parser.close()
    except ElementTree.ParseError as exc:
        reason = printable(str(exc).splitlines()[0] if str(exc) else "malformed")[1:-1]
        raise DocumentError(f"the identity document is not well-formed XML: {reason}") from None
    if builder.saw_doctype:
        raise DocumentError("the identity document has a DOCTYPE; DTDs are refused")
    if builder.around_root:
        raise DocumentError(
            "the identity document has comments or processing instructions around <identity>"
        )
    _check_depth(root)
    fields = _read_fields(root)
    return Identity(**fields)


# --- helpers -------------------------------------------------------------------------------------


def _read_fields(root: Any) -> dict[str, Any]:
    if root.tag != "identity":
        raise DocumentError(f"the root element is <{_tag(root)}>, expected <identity>")
    if root.attrib:
        raise DocumentError("<identity> must have no attributes")
    _check_blank(root.text, "<identity>")
    fields: dict[str, Any] = {}
    position = 0
    seen: set[str] = set()
    for child in root:
        tag = _tag(child)
        if not isinstance(child.tag, str):
            raise DocumentError(f"<identity> must contain only elements, found {tag}")
        _check_blank(child.tail, "<identity>")
        if tag not in ELEMENT_ORDER:
            raise DocumentError(f"unknown element <{tag}> in <identity>")
        if tag in seen:
            raise DocumentError(f"element <{tag}> appears twice")
        expected = ELEMENT_ORDER[position] if position < len(ELEMENT_ORDER) else None
        if tag != expected:
            if expected is not None and ELEMENT_ORDER.index(tag) > position:
                raise DocumentError(f"missing element <{expected}> (before <{tag}>)")
            raise DocumentError(f"element <{tag}> is out of order")
        seen.add(tag)
        position += 1
        fields[tag] = _read_element(child, tag)
    if position < len(ELEMENT_ORDER):
        raise DocumentError(f"missing element <{ELEMENT_ORDER[position]}>")
    signature_text, scheme = fields["signature"]
    fields["signature"] = signature_text
    fields["scheme"] = scheme
    revision_text = fields["revision"]
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", revision_text):
        raise DocumentError(
            f"<revision> {printable(revision_text)} is not a non-negative integer "
            "without leading zeros"
        )
    fields["revision"] = int(revision_text)
    return fields


def _read_element(element: Any, tag: str) -> Any:
    if tag == "signature":
        extra = set(element.attrib) - {"scheme"}
        if extra:
            raise DocumentError(
                f"<signature> has an unknown attribute {printable(sorted(extra)[0])}"
            )
        scheme = element.attrib.get("scheme")
        if scheme is not None and scheme not in SCHEMES[1:]:
            raise DocumentError(
                f"signature scheme {printable(scheme)} is not known (write no scheme attribute for "
                f"BitDust's legacy signature; ours is '{SCHEME_PSS}')"
            )
        return _leaf_text(element, tag), scheme or SCHEME_LEGACY
    if element.attrib:
        raise DocumentError(f"<{tag}> must have no attributes")
    if tag in LIST_ITEMS:
        item_tag = LIST_ITEMS[tag]
        _check_blank(element.text, f"<{tag}>")
        items = []
        for item in element:
            if not isinstance(item.tag, str) or item.tag != item_tag:
                raise DocumentError(
                    f"<{tag}> may contain only <{item_tag}> elements, found {_tag(item)}"
                )
            if item.attrib:
                raise DocumentError(f"<{item_tag}> must have no attributes")
            _check_blank(item.tail, f"<{tag}>")
            items.append(_leaf_text(item, item_tag))
        return items
    return _leaf_text(element, tag)


def _leaf_text(element: Any, tag: str) -> str:
    if len(element):
        raise DocumentError(f"<{tag}> must contain only text")
    return element.text or ""


def _check_depth(root: Any) -> None:
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DocumentError(f"the identity document is nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in element)


def _check_blank(text: str | None, where: str) -> None:
    if text is not None and text.strip(" \t\r\n"):
        raise DocumentError(f"unexpected text {printable(text.strip())} in {where}")


def check_contacts(contacts: tuple[str, ...]) -> None:
    """Raise :class:`DocumentError` unless ``contacts`` may be an identity's contacts."""
    _check_list(
        "contacts",
        contacts,
        MAX_CONTACTS,
        _CONTACT_RE,
        MAX_ITEM_LENGTH,
        "a contact like 'tcp://1.2.3.4:7771'",
    )


def _check_list(
    name: str,
    items: tuple[str, ...],
    limit: int,
    pattern: re.Pattern[str],
    max_length: int,
    expected: str,
) -> None:
    if len(items) > limit:
        raise DocumentError(f"<{name}> has {len(items)} items; at most {limit} are allowed")
    item = LIST_ITEMS[name]
    for value in items:
        if not isinstance(value, str) or len(value) > max_length or not pattern.fullmatch(value):
            raise DocumentError(f"<{item}> {printable(value)} is not {expected}")


def _tag(element: Any) -> str:
    tag = element.tag
    if isinstance(tag, str):
        return printable(tag)[1:-1]
    if tag is ElementTree.Comment:
        return "a comment"
    return "a processing instruction"


class _Builder(ElementTree.TreeBuilder):
    """ElementTree's tree, with comments and processing instructions kept as elements (so that
    they are refused where they stand) and those outside the root, and any DOCTYPE, noted."""

    def __init__(self) -> None:
        super().__init__(insert_comments=True, insert_pis=True)
        self.depth = 0
        self.around_root = False
        self.saw_doctype = False

    def start(self, tag: str, attrs: dict[str, str]) -> ElementTree.Element:
        self.depth += 1
        return super().start(tag, attrs)

    def end(self, tag: str) -> ElementTree.Element:
        self.depth -= 1
        return super().end(tag)

    def comment(self, text: str) -> ElementTree.Element:
        self.around_root |= self.depth == 0
        return super().comment(text)

    def pi(self, target: str, text: str | None = None) -> ElementTree.Element:
        self.around_root |= self.depth == 0
        return super().pi(target, text)

    def doctype(self, name: str, pubid: str, system: str) -> None:  # type: ignore[override]
        self.saw_doctype = True


def _escape(text: str) -> str:
    for char, entity in _ESCAPES:
        text = text.replace(char, entity)
    return text
