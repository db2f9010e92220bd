"""`make bench`: run every benchmark module and write tests/bench/results.json.

Each module ``tests/bench/bench_*.py`` has ``run(smoke: bool) -> list[dict]`` returning rows with
``name``, ``figure``, ``unit``, ``limit`` and ``target`` (``"below"``: the figure must stay under
the limit; ``"above"``: over it). A limit is always measured in the same run on the same machine
(a bare baseline, or log2(N) for a lookup), never a constant from somewhere else, so the ratio
means the same on a slow CI box as on a laptop. This harness adds ``ratio``, ``ok`` and ``machine``.

How a cost grows is a *curve*: rows with ``curve`` (the path's name), ``x`` and ``x_unit`` (the
size that grows), ``figure`` and ``unit``, and no limit. The harness prints a table per curve with
the growth exponent between neighbouring points (cost ~ x^e: 1 is linear, 0 constant) and writes
them beside the rows.
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
CURVE_REQUIRED = ("curve", "x", "x_unit", "figure", "unit")


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


def curves_of(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group curve points by path, in growing ``x``, each with the growth exponent from the point
    before it (``None`` for the first)."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        missing = [field for field in CURVE_REQUIRED if field not in point]
        if missing:
            raise ValueError(f"curve point {point.get('curve')!r} lacks {missing}")
        if not (float(point["x"]) > 0 and math.isfinite(float(point["figure"]))):
            raise ValueError(
                f"{point['curve']}: x {point['x']} / figure {point['figure']} unusable"
            )
        curves.setdefault(point["curve"], []).append(dict(point))
    for series in curves.values():
        series.sort(key=lambda point: float(point["x"]))
        previous = None
        for point in series:
            point["exponent"] = None
            if previous and float(previous["figure"]) > 0 and float(point["figure"]) > 0:
                grew = math.log(float(point["figure"]) / float(previous["figure"]))
                point["exponent"] = round(grew / math.log(point["x"] / previous["x"]), 3)
            previous = point
    return curves


def run_all(
    smoke: bool, only: list[str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Every module's rows (completed) and curves."""
    host = machine()
    rows, points = [], []
    for name in modules():
        if only and not any(part in name for part in only):
            continue
        started = time.perf_counter()
        module = importlib.import_module(name)
        for row in module.run(smoke=smoke):
            if "curve" in row:
                points.append(row)
            else:
                rows.append(complete(row, host))
        print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return rows, curves_of(points)


def print_curves(curves: dict[str, list[dict[str, Any]]]) -> None:
    for name, series in curves.items():
        print(f"\n{name}")
        for point in series:
            grew = "" if point["exponent"] is None else f"  growth x^{point['exponent']:.2f}"
            note = f"  ({point['note']})" if point.get("note") else ""
            print(f"  {point['x']:>10g} {point['x_unit']:<10} {point['figure']:>12.4g} "
                  f"{point['unit']}{grew}{note}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for make test")
    parser.add_argument("--only", nargs="*", help="run modules whose name contains one of these")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows, curves = run_all(args.smoke, args.only)
    for row in rows:
        sign = "<=" if row["target"] == "below" else ">="
        verdict = "ok" if row["ok"] else "MISSED"
        print(f"{row['name']:<44} {row['figure']:>12.4g} {row['unit']:<10} "
              f"target {sign} {row['limit']:.4g}  ratio {row['ratio']:.3f}  {verdict}")  # fmt: skip
    print_curves(curves)
    results = {
        "machine": machine(),
        "smoke": args.smoke,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
        "curves": curves,
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{len(rows)} figures, {sum(map(len, curves.values()))} curve points "
          f"in {results['seconds']:.0f} s; wrote {args.output}")  # fmt: skip
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
