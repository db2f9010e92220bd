"""Every value `set` can write reads back as the same value, for every option in the registry
(issue 10 item 15): format, write the conffile line, read it, parse it."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitdust.config import (
    DURATION,
    MAX_DURATION,
    MAX_SIZE,
    OPTIONS,
    Option,
    plan_edit,
    read_conffile,
)

HOSTNAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True)
IPS = st.ip_addresses().map(str)
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), max_size=80).map(
    str.strip
)
PORTS = st.integers(1, 65535)


def _durations(option: Option) -> st.SearchStrategy[float]:
    low = option.low if option.low is not None else 0
    high = option.high if option.high is not None else MAX_DURATION
    whole_units = [
        st.integers(math.ceil(low / unit), int(high // unit)).map(lambda n, u=unit: float(n * u))
        for unit in (60, 3600, 86400)
        if high >= unit
    ]
    seconds = st.decimals(Decimal(str(low)), Decimal(str(high)), places=6).map(float)
    return st.one_of(seconds, *whole_units)


def values_of(option: Option) -> st.SearchStrategy[Any]:
    """Every value the option's parser can produce (canonical: lower-case names, and so on)."""
    kind = option.type
    if kind.choices:
        return st.sampled_from(kind.choices)
    low = option.low if option.low is not None else -(2**63)
    high = option.high if option.high is not None else 2**63 - 1
    by_name: dict[str, st.SearchStrategy[Any]] = {
        "bool": st.booleans(),
        "port": st.integers(0, 65535),
        "int": st.integers(int(low), int(high)),
        "size": st.integers(max(0, int(low)), min(MAX_SIZE, int(high))),
        "duration": _durations(option),
        "known nodes": st.one_of(
            st.just("genesis"),
            st.lists(st.tuples(st.one_of(HOSTNAMES, IPS), PORTS), max_size=4).map(tuple),
        ),
        "server list": st.lists(
            st.tuples(st.one_of(HOSTNAMES, st.ip_addresses(v=4).map(str)), PORTS, PORTS),
            max_size=4,
            unique_by=lambda server: server[:2],
        ).map(tuple),
        "host map": st.dictionaries(HOSTNAMES, IPS, max_size=4),
        "address": st.one_of(st.just(""), IPS),
        "host": st.one_of(st.just(""), HOSTNAMES, IPS),
        "string": TEXT,
    }
    return by_name[kind.name]  # a KeyError here: a new type needs its strategy


@pytest.fixture(scope="module")
def conffile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where edits are planned; nothing is written there."""
    return tmp_path_factory.mktemp("etc") / "x.conf"


@pytest.mark.parametrize("key", sorted(OPTIONS))
@given(data=st.data())
def test_every_value_reads_back_from_its_conffile_line(
    key: str, data: st.DataObject, conffile: Path
) -> None:
    option = OPTIONS[key]
    value = data.draw(values_of(option))
    text = option.format(value)
    assert option.parse(text) == value
    edit = plan_edit(conffile, key, text)
    assert read_conffile(conffile, edit.text) == {key: value}


@pytest.mark.parametrize("key", sorted(OPTIONS))
def test_every_default_is_a_value_of_its_option(key: str) -> None:
    option = OPTIONS[key]
    assert option.parse(option.format(option.default)) == option.default


@pytest.mark.parametrize(
    ("typed", "written"),
    [("90d", "90 d"), ("7776000", "90 d"), ("36 h", "36 h"), ("90 min", "90 min"),
     ("1.5 h", "90 min"), ("100000 s", "100000 s"), ("2.25", "2.25 s"), ("0.000001", "0.000001 s")],
)  # fmt: skip
def test_durations_are_written_in_their_largest_whole_unit(typed: str, written: str) -> None:
    assert DURATION.format_value(DURATION.parse(typed)) == written


@pytest.mark.parametrize("value", ['"quoted"', "'single'", '"', "a 'b' c", "x=y"])
def test_text_with_quotes_keeps_them_through_the_conffile(value: str, conffile: Path) -> None:
    key = "services/proxy-transport/preferred-routers"
    assert read_conffile(conffile, plan_edit(conffile, key, value).text) == {key: value}
