"""The durability model (tools/durability.py) drives the real repair policy through churn."""

from __future__ import annotations

import pytest

from bitdust.storage.repair import RepairPolicy
from tools.durability import HOUR, Churn, main, parse_scheme, simulate

# Suppliers leave fast and the customer reacts slowly: chunks are lost within a year.
HARSH = Churn(0.5, audit_interval=4 * HOUR, repair_time=24 * HOUR)
HARSH_AWAY_LIMIT = 24 * HOUR


def run(scheme_name: str, churn: Churn, *, policy: RepairPolicy | None = None, seed: int = 1):
    scheme = parse_scheme(scheme_name)
    return simulate(
        scheme,
        policy or scheme.policy(HARSH_AWAY_LIMIT),
        churn,
        customers=200,
        years=1,
        seed=seed,
    )


@pytest.mark.parametrize("scheme", ["2-of-4", "13-of-26", "xor-4"])
def test_without_churn_nothing_is_lost_or_repaired(scheme):
    outcome = run(scheme, Churn(0))
    assert (outcome.lost, outcome.repairs, outcome.traffic) == (0, 0, 0)
    assert outcome.loss_upper_bound == pytest.approx(3 / 200)


def test_two_of_four_loses_chunks_under_heavy_churn():
    outcome = run("2-of-4", HARSH)
    assert outcome.lost > 0
    assert 0 < outcome.loss_probability <= outcome.loss_upper_bound < 1
    assert outcome.repairs > 0 and outcome.traffic_per_gb_year > 0


def test_thirteen_of_twenty_six_loses_fewer_than_two_of_four():
    assert run("13-of-26", HARSH).lost < run("2-of-4", HARSH).lost


def test_the_policy_threshold_decides_how_often_chunks_are_rebuilt():
    """A policy passed in is the one consulted: repairing at the first missing fragment of
    4-of-7 rebuilds more often than waiting until only k are left."""
    scheme = parse_scheme("4-of-7")
    churn = Churn(0.2)
    eager = run("4-of-7", churn, policy=scheme.policy(HOUR, threshold=6))
    late = run("4-of-7", churn, policy=scheme.policy(HOUR, threshold=4))
    assert eager.repairs > 2 * late.repairs
    # each eager rebuild moves k fragments down and one up, a late one k down and three up
    assert eager.traffic / eager.repairs < late.traffic / late.repairs


def test_a_policy_for_another_scheme_is_refused():
    with pytest.raises(ValueError, match="not the scheme 2-of-4"):
        run("2-of-4", Churn(0.1), policy=parse_scheme("4-of-7").policy(HOUR))


def test_same_seed_same_outcome_other_seed_other_outcome():
    assert run("4-of-7", HARSH, seed=7) == run("4-of-7", HARSH, seed=7)
    assert run("4-of-7", HARSH, seed=7) != run("4-of-7", HARSH, seed=8)


def test_repair_traffic_per_scheme():
    """k-of-N downloads k fragments of 1/k; BitDust's XOR rebuild downloads the two pieces
    (2/N) of every supplier that still has them."""
    assert parse_scheme("2-of-4").repair_traffic(healthy=3, rebuilt=1) == pytest.approx(1.5)
    assert parse_scheme("13-of-26").repair_traffic(healthy=19, rebuilt=7) == pytest.approx(20 / 13)
    xor = parse_scheme("xor-4")
    assert (xor.k, xor.n) == (2, 4)
    assert xor.repair_traffic(healthy=3, rebuilt=1) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4-of-4", "k must be below n"),
        ("xor-5", "XOR maps exist for 2, 4, 7"),
        ("0-of-4", "not a positive whole number"),
        ("raid5", "expected 'K-of-N'"),
    ],
)
def test_bad_schemes_are_refused_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_scheme(text)


def test_markdown_table_has_a_row_per_scheme_and_rate(capsys):
    assert (
        main(["--markdown", "--customers", "50", "--churn", "0,5", "--schemes", "2-of-4,xor-4"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| scheme | churn / month |")
    rows = [line.split(" | ")[:2] for line in lines[2:]]
    assert rows == [["| 2-of-4", "0%"], ["| 2-of-4", "5%"], ["| xor-4", "0%"], ["| xor-4", "5%"]]


def test_bad_command_line_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--churn", "100"])
    assert "under 100 %" in capsys.readouterr().err
