"""The benchmarks in smoke mode: every module runs and yields well-formed, usable rows.

Speed is judged by `make bench` (ratios against limits measured in the same run), not here.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.bench import run as harness


@pytest.mark.timeout(600)
@pytest.mark.parametrize("module", harness.modules())
def test_benchmark_module_runs_in_smoke_mode(module: str, tmp_path) -> None:
    rows, curves = harness.run_all(smoke=True, only=[module.rsplit(".", 1)[1]])
    assert rows or curves, f"{module} produced no rows"
    for row in rows:
        assert row["figure"] > 0 and math.isfinite(row["figure"]), row
        assert row["limit"] > 0 and row["ratio"] == pytest.approx(
            row["figure"] / row["limit"], rel=1e-3
        )
        assert row["machine"]["cores"] >= 1
    for series in curves.values():
        assert all(point["figure"] > 0 for point in series), series
        assert [point["x"] for point in series] == sorted({point["x"] for point in series})
    output = tmp_path / "results.json"
    output.write_text(json.dumps({"rows": rows, "curves": curves}))
    assert json.loads(output.read_text())["rows"] == rows


def test_curves_carry_the_growth_exponent_between_neighbouring_points() -> None:
    points = [
        {"curve": "c", "x": 4, "x_unit": "MB", "figure": 8.0, "unit": "s"},
        {"curve": "c", "x": 1, "x_unit": "MB", "figure": 2.0, "unit": "s"},
        {"curve": "c", "x": 16, "x_unit": "MB", "figure": 8.0, "unit": "s"},
    ]
    series = harness.curves_of(points)["c"]
    assert [point["x"] for point in series] == [1, 4, 16]
    assert [point["exponent"] for point in series] == [None, 1.0, 0.0]
    with pytest.raises(ValueError, match="lacks"):
        harness.curves_of([{"curve": "c", "x": 1, "figure": 1.0}])
