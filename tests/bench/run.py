"""`make bench`: run every benchmark module and write tests/bench/results.json.

Each module ``tests/bench/bench_*.py`` has ``run(smoke: bool) -> list[dict]`` returning rows with
``name``, ``figure``, ``unit``, ``limit`` and ``target`` (``"below"``: the figure must stay under
the limit; ``"above"``: over it). A limit is always measured in the same run on the same machine
(a bare baseline, or log2(N) for a lookup), never a constant from somewhere else, so the ratio
means the same on a slow CI box as on a laptop. This harness adds ``ratio``, ``ok`` and ``machine``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
REQUIRED = ("name", "figure", "unit", "limit", "target")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "binary": os.environ.get("BITDUST_BIN", ""),
    }


def modules() -> list[str]:
    return sorted(f"tests.bench.{p.stem}" for p in HERE.glob("bench_*.py"))


def complete(row: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """Check a module's row and add the ratio and verdict."""
    missing = [field for field in REQUIRED if field not in row]
    if missing:
        raise ValueError(f"benchmark row {row.get('name')!r} lacks {missing}")
    if row["target"] not in ("below", "above"):
        raise ValueError(f"{row['name']}: target must be 'below' or 'above'")
    figure, limit = float(row["figure"]), float(row["limit"])
    if not (math.isfinite(figure) and math.isfinite(limit) and limit > 0):
        raise ValueError(f"{row['name']}: figure {figure} / limit {limit} is not usable")
    ratio = figure / limit
    ok = ratio <= 1 if row["target"] == "below" else ratio >= 1
    return {**row, "ratio": round(ratio, 4), "ok": ok, "machine": host}


def run_all(smoke: bool, only: list[str] | None = None) -> list[dict[str, Any]]:
    host = machine()
    rows = []
    for name in modules():
        if only and not any(part in name for part in only):
            continue
        started = time.perf_counter()
        module = importlib.import_module(name)
        for row in module.run(smoke=smoke):
            rows.append(complete(row, host))
        print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for make test")
    parser.add_argument("--only", nargs="*", help="run modules whose name contains one of these")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = run_all(args.smoke, args.only)
    for row in rows:
        sign = "<=" if row["target"] == "below" else ">="
        verdict = "ok" if row["ok"] else "MISSED"
        print(f"{row['name']:<44} {row['figure']:>12.4g} {row['unit']:<10} "
              f"target {sign} {row['limit']:.4g}  ratio {row['ratio']:.3f}  {verdict}")  # fmt: skip
    args.output.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
