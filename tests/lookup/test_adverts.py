"""The advert codec: what a node publishes decodes back, and nothing else gets through."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitdust.lookup.adverts import (
    INDEX_BUCKETS,
    MAX_ADVERT,
    MAX_INFO_ENTRIES,
    MAX_INFO_TEXT,
    Advert,
    Defect,
    MalformedAdvert,
    Role,
    advert_name,
    bucket_of,
    decode_advert,
    encode_advert,
)

info_values = st.one_of(
    st.text(max_size=MAX_INFO_TEXT), st.integers(-(2**63), 2**63 - 1), st.booleans()
)
infos = st.dictionaries(st.text(min_size=1, max_size=32), info_values, max_size=4)


def packed(**fields: object) -> bytes:
    base: dict[str, object] = {"v": 1, "r": "proxy-router", "i": {}, "t": 1, "w": False}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not ...}, use_bin_type=True)


@given(st.sampled_from(Role), infos, st.integers(0, 2**40 - 1), st.booleans())
def test_advert_round_trips(role: Role, info: dict, published: int, withdrawn: bool) -> None:
    advert = Advert(role, info, published, withdrawn)
    try:
        data = encode_advert(advert)
    except MalformedAdvert as refused:  # long texts of multi-byte characters
        assert refused.defect is Defect.TOO_LARGE
        assert sum(len(f"{k}{v}".encode()) for k, v in info.items()) > MAX_ADVERT - 64
    else:
        assert decode_advert(data, role) == advert


@given(st.binary(max_size=MAX_ADVERT + 16))
def test_decoder_refuses_any_bytes_with_a_reason(data: bytes) -> None:
    try:
        advert = decode_advert(data, Role.ROUTER)
    except MalformedAdvert as exc:
        assert isinstance(exc.defect, Defect)
    else:
        assert advert.role is Role.ROUTER


@pytest.mark.parametrize(
    ("data", "defect"),
    [
        (b"\x00" * (MAX_ADVERT + 1), Defect.TOO_LARGE),
        (b"\xc1", Defect.NOT_MSGPACK),
        (packed() + b"\x00", Defect.NOT_MSGPACK),
        (msgpack.packb([1, 2]), Defect.NOT_MSGPACK),  # arrays are not allowed at all
        (msgpack.packb({"x": 1}), Defect.NOT_A_MAP),
        (packed(w=...), Defect.NOT_A_MAP),
        (packed(v=2), Defect.BAD_VERSION),
        (packed(v=True), Defect.BAD_VERSION),
        (packed(r="supplier"), Defect.WRONG_ROLE),
        (packed(t=-1), Defect.BAD_TIMESTAMP),
        (packed(t=2**40), Defect.BAD_TIMESTAMP),
        (packed(w=1), Defect.BAD_WITHDRAWN),
        (packed(i=[]), Defect.BAD_INFO),
        (packed(i={"k": "x" * (MAX_INFO_TEXT + 1)}), Defect.BAD_INFO),
        (packed(i={"": 1}), Defect.BAD_INFO),
        (packed(i={"k": 1.5}), Defect.BAD_INFO),
        (packed(i={"k": {"nested": 1}}), Defect.BAD_INFO),
        (packed(i={str(n): n for n in range(MAX_INFO_ENTRIES + 1)}), Defect.NOT_MSGPACK),
    ],
)
def test_decoder_names_the_defect(data: bytes, defect: Defect) -> None:
    with pytest.raises(MalformedAdvert) as refused:
        decode_advert(data, Role.ROUTER)
    assert refused.value.defect is defect


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(MalformedAdvert) as refused:
        encode_advert(Advert(Role.ROUTER, {"contact": b"bytes are not info"}))  # type: ignore[dict-item]
    assert refused.value.defect is Defect.BAD_INFO


def test_names_fit_an_owned_key_and_buckets_are_stable() -> None:
    assert all(len(advert_name(role).encode()) <= 64 for role in Role)
    assert bucket_of("http://a.example/alice.xml") == bucket_of("http://a.example/alice.xml")
    spread = {bucket_of(f"http://a.example/n{i}.xml") for i in range(200)}
    assert spread == set(range(INDEX_BUCKETS))
