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
    rows = harness.run_all(smoke=True, only=[module.rsplit(".", 1)[1]])
    assert rows, f"{module} produced no rows"
    for row in rows:
        assert row["figure"] > 0 and math.isfinite(row["figure"]), row
        assert row["limit"] > 0 and row["ratio"] == pytest.approx(
            row["figure"] / row["limit"], rel=1e-3
        )
        assert row["machine"]["cores"] >= 1
    output = tmp_path / "results.json"
    output.write_text(json.dumps(rows))
    assert json.loads(output.read_text())[0]["name"] == rows[0]["name"]
