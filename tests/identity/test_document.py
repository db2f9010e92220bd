"""Identity XML: BitDust's exact format, and a parser that refuses everything else cleanly."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitdust.identity.document import (
    MAX_DOCUMENT_SIZE,
    SCHEME_LEGACY,
    Identity,
    format_date,
    parse_date,
    parse_identity,
)
from bitdust.identity.errors import DocumentError, IdentityError
from tests.identity.conftest import make_identity, reference_file

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE identity [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<identity><sources><source>&lol9;</source></sources></identity>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE identity [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<identity><sources><source>&xxe;</source></sources></identity>"""


@pytest.mark.parametrize("name", ["alice.xml", "sup1.xml"])
def test_reference_file_round_trips_byte_for_byte(name):
    data = reference_file(name)
    identity = parse_identity(data)
    assert identity.to_xml() == data


def test_reference_file_fields():
    identity = parse_identity(reference_file("alice.xml"))
    assert identity.sources == ("http://127.0.0.1:8084/alice.xml",)
    assert identity.contacts == ("tcp://127.0.0.1:17774",)
    assert identity.certificates == () and identity.scrubbers == ()
    assert identity.postage == "1"
    assert identity.date == "Nov 25, 2026"
    assert identity.version == "sources"
    assert identity.revision == 1
    assert identity.publickey.startswith("ssh-rsa AAAAB3NzaC1yc2E")
    assert identity.scheme == SCHEME_LEGACY
    assert identity.name == "alice"
    assert identity.global_id == "alice@127.0.0.1_8084"


def test_written_document_has_bitdust_layout(key):
    identity = make_identity(
        key, sources=("http://host-a.com/alice.xml", "http://host-b.com:8084/alice.xml")
    )
    text = identity.to_xml().decode()
    lines = text.split("\n")
    assert lines[0] == '<?xml version="1.0" encoding="utf-8"?>'
    assert lines[1:5] == [
        "<identity>",
        "  <sources>",
        "    <source>http://host-a.com/alice.xml</source>",
        "    <source>http://host-b.com:8084/alice.xml</source>",
    ]
    assert "  <certificates/>" in lines and "  <scrubbers/>" in lines
    assert lines[-2].startswith('  <signature scheme="rsa-pss-sha256-v1">')
    assert text.endswith("</identity>")
    assert identity.global_id == "alice@host-a.com"


def test_date_is_bitdust_format_in_any_locale():
    assert format_date(datetime.date(2026, 2, 5)) == "Feb 05, 2026"
    assert parse_date("Feb 05, 2026") == datetime.date(2026, 2, 5)
    for bad in ("Feb 5, 2026", "feb 05, 2026", "Feb 30, 2026", "2026-02-05"):
        with pytest.raises(DocumentError, match=r"is not (a date like|a real calendar date)"):
            parse_date(bad)


def _refused(data: bytes, match: str) -> None:
    with pytest.raises(DocumentError, match=match):
        parse_identity(data)


def test_billion_laughs_is_refused():
    _refused(BILLION_LAUGHS, "DOCTYPE")


def test_external_entity_is_refused():
    _refused(XXE, "DOCTYPE")


@pytest.mark.parametrize(("codec", "match"), [("utf-16", "not UTF-8"), ("utf-16-le", "NUL")])
def test_utf16_external_entity_is_refused_before_parsing(codec, match):
    text = XXE.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    _refused(text.encode(codec), match)


def test_doctype_without_entities_is_refused(key):
    data = make_identity(key).to_xml()
    data = data.replace(b"<identity>", b"<!DOCTYPE identity>\n<identity>", 1)
    _refused(data, "DOCTYPE")


def test_undeclared_entity_is_refused(key):
    data = make_identity(key).to_xml().replace(b"<postage>1", b"<postage>&lol;")
    _refused(data, "not well-formed")


def test_oversized_document_is_refused_before_parsing():
    _refused(b"<identity>" + b" " * MAX_DOCUMENT_SIZE + b"</identity>", "limit is 65536")


def test_deep_nesting_is_refused():
    _refused(b"<identity>" + b"<a>" * 50 + b"</a>" * 50 + b"</identity>", "nested deeper")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.replace(b"  <postage>1</postage>\n", b""), "missing element <postage>"),
        (lambda d: d.replace(b"<scrubbers/>", b"<scrubbers/><scrubbers/>"), "appears twice"),
        (
            lambda d: d.replace(b"<postage>1</postage>", b"").replace(
                b"<version>", b"<postage>1</postage><version>"
            ),
            "missing element <postage>|out of order",
        ),
        (lambda d: d.replace(b"<scrubbers/>", b"<scrubbers/><extra/>"), "unknown element"),
        (lambda d: d.replace(b"<identity>", b'<identity a="1">'), "no attributes"),
        (lambda d: d.replace(b"<postage>", b'<postage x="1">'), "no attributes"),
        (lambda d: d.replace(b"<postage>1", b"<postage><b/>1"), "only text"),
        (lambda d: d.replace(b"<scrubbers/>", b"<scrubbers/><!-- hi -->"), "only elements"),
        (lambda d: d.replace(b"<scrubbers/>", b"<scrubbers/>text"), "unexpected text"),
        (lambda d: d.replace(b"<contacts>", b"<contacts><source>x</source>"), "only <contact>"),
        (
            lambda d: d.replace(b"<identity>", b"<other>").replace(b"</identity>", b"</other>"),
            "root element",
        ),
        (lambda d: d.replace(b"<revision>1<", b"<revision>01<"), "leading zeros"),
        (lambda d: d.replace(b"<revision>1<", b"<revision>-1<"), "revision"),
        (lambda d: d.replace(b"<date>Nov 25, 2026", b"<date>yesterday"), "date"),
        (lambda d: d.replace(b"ssh-rsa AAAA", b"ssh-dss AAAA"), "publickey"),
        (lambda d: d.replace(b'scheme="rsa-pss-sha256-v1"', b'scheme="md5"'), "not known"),
        (lambda d: d.replace(b"alice.xml", b"al!ce.xml"), "source"),
        (lambda d: d.replace(b"</identity>", b"</identity><!-- x -->"), "comments"),
        (lambda d: d.replace(b"utf-8", b"iso-8859-1"), "UTF-8"),
        (lambda d: d[:-5], "not well-formed"),
        (lambda d: b"", "empty"),
        (lambda d: b"\xff\xfe<\x00", "UTF-8"),
    ],
)
def test_malformed_documents_are_refused_with_a_reason(key, mutate, match):
    data = make_identity(key).to_xml()
    mutated = mutate(data)
    assert mutated != data
    _refused(mutated, match)


def test_sources_must_share_one_name(key):
    with pytest.raises(DocumentError, match="same name"):
        make_identity(key, sources=("http://host-a.com/alice.xml", "http://host-b.com/bob.xml"))


def test_at_most_six_sources(key):
    sources = tuple(f"http://host-{i}.com/alice.xml" for i in range(7))
    with pytest.raises(DocumentError, match="1-6"):
        make_identity(key, sources=sources)


def test_same_server_twice_is_refused(key):
    with pytest.raises(DocumentError, match="twice"):
        make_identity(key, sources=("http://host-a.com/alice.xml",) * 2)


def test_identity_is_immutable(key):
    identity = make_identity(key)
    with pytest.raises(AttributeError):
        identity.revision = 5  # type: ignore[misc]
    assert isinstance(identity, Identity)


def test_text_is_escaped_and_read_back(key):
    identity = make_identity(key, version='a<b & "c"')
    assert b"a&lt;b &amp; &quot;c&quot;" in identity.to_xml()
    assert parse_identity(identity.to_xml()) == identity


# -- hypothesis: parse_identity raises only IdentityError ------------------------------------------

_TOKENS = [
    *"<>/=\"'&;!?[] \n\t-:",
    "identity",
    "sources",
    "source",
    "contacts",
    "postage",
    "signature",
    "DOCTYPE",
    "ENTITY",
    "<![CDATA[",
    "]]>",
    "&#x41;",
    "&lt;",
    "xml",
    "version",
    "1",
    "a",
]
_xmlish = st.lists(st.sampled_from(_TOKENS), max_size=200).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_identity_error(data):
    with contextlib.suppress(IdentityError):
        parse_identity(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_xmlish)
def test_random_xmlish_text_raises_only_identity_error(text):
    with contextlib.suppress(IdentityError):
        parse_identity(text.encode("utf-8"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0), st.binary(min_size=0, max_size=8), st.data())
def test_mutated_real_document_raises_only_identity_error(position, insert, data):
    document = reference_file("alice.xml")
    position %= len(document)
    cut = data.draw(st.integers(min_value=0, max_value=8))
    mutated = document[:position] + insert + document[position + cut :]
    with contextlib.suppress(IdentityError):
        parse_identity(mutated)
