"""The durability model: years of supplier churn through the real repair policy.

Each simulated customer keeps one chunk on its N suppliers, one fragment per supplier. Suppliers
leave at random (exponential lifetimes from a monthly churn rate); the customer notices at its
next audit, ``RepairPolicy.to_replace`` decides when a supplier that stays away is replaced,
``healthy_fragments`` and ``RepairPolicy.needs_repair`` decide when the chunk is rebuilt, and
``RepairPolicy.lost`` says when too few fragments are left. The decisions are those of
``bitdust/storage/repair.py``; this file only supplies the clock and the dice, and must never
decide anything itself. All of one customer's chunks sit on the same suppliers, so they share one
fate: a customer is one independent sample of "a chunk".

Run ``python -m tools.durability --markdown`` for the tables of docs/durability.md.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from bitdust.storage.repair import RepairPolicy, SupplierHealth, healthy_fragments

HOUR = 3600.0
YEAR = 365.25 * 24 * HOUR
MONTH = YEAR / 12

# A supplier that left never fails an audit (it is away instead), so this limit never decides
# anything here; RepairPolicy needs one all the same.
AUDIT_FAILURES_LIMIT = 3

# BitDust's ecc/NxN maps: suppliers -> supplier losses they can correct ("for some combinations").
XOR_CORRECTABLE = {2: 1, 4: 2, 7: 3, 13: 4, 18: 5, 26: 6, 64: 10}


@dataclass(frozen=True)
class Scheme:
    """How a chunk is spread over ``n`` suppliers: any ``k`` of them restore it, each holds
    ``share`` of the chunk's size, and a rebuild downloads from ``k`` suppliers (erasure codes)
    or from every supplier that still has its pieces (BitDust's XOR maps)."""

    name: str
    k: int
    n: int
    share: float
    downloads_all_healthy: bool = False

    def policy(self, away_limit: float, threshold: int | None = None) -> RepairPolicy:
        """The customer's policy for this scheme, at the default threshold unless one is given."""
        if threshold is None:
            threshold = RepairPolicy.default_threshold(self.k, self.n)
        return RepairPolicy(
            k=self.k,
            n=self.n,
            threshold=threshold,
            away_limit=away_limit,
            audit_failures_limit=AUDIT_FAILURES_LIMIT,
        )

    def repair_traffic(self, healthy: int, rebuilt: int) -> float:
        """GB moved per GB of chunk to rebuild ``rebuilt`` suppliers' share from ``healthy``."""
        downloaded = healthy if self.downloads_all_healthy else self.k
        return self.share * (downloaded + rebuilt)


def parse_scheme(text: str) -> Scheme:
    """'K-of-N' (zfec, as bitdust stores) or 'xor-N' (BitDust's ecc/NxN, N in XOR_CORRECTABLE).

    The XOR adapter: N data and N parity pieces of 1/N of the chunk, one of each per supplier, so
    a supplier holds 2/N; the chunk is taken to survive while at most XOR_CORRECTABLE[N] suppliers
    are gone, whichever they are (optimistic: BitDust's maps fix only some such combinations),
    which is a k-of-N policy on suppliers with k = N - correctable."""
    name = text.strip().lower()
    if name.startswith("xor-"):
        suppliers = _positive_int(name[4:], text)
        if suppliers not in XOR_CORRECTABLE:
            raise ValueError(
                f"scheme {text!r}: BitDust's XOR maps exist for "
                f"{', '.join(map(str, XOR_CORRECTABLE))} suppliers"
            )
        k = suppliers - XOR_CORRECTABLE[suppliers]
        return Scheme(name, k, suppliers, 2 / suppliers, downloads_all_healthy=True)
    k_text, of, n_text = name.partition("-of-")
    if not of:
        raise ValueError(f"scheme {text!r}: expected 'K-of-N' (e.g. 4-of-7) or 'xor-N'")
    k, n = _positive_int(k_text, text), _positive_int(n_text, text)
    if k >= n:
        raise ValueError(f"scheme {text!r}: k must be below n, or nothing can be repaired")
    return Scheme(name, k, n, 1 / k)


def _positive_int(text: str, scheme: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"scheme {scheme!r}: {text!r} is not a positive whole number")
    return int(text)


@dataclass(frozen=True)
class Churn:
    """The world around the customer: how fast suppliers leave and how fast it reacts (seconds)."""

    monthly_rate: float  # fraction of suppliers leaving per month, 0 <= rate < 1
    audit_interval: float = HOUR
    repair_time: float = HOUR

    def __post_init__(self) -> None:
        if not 0 <= self.monthly_rate < 1:
            raise ValueError(f"churn {self.monthly_rate:.0%} per month: must be 0 to under 100 %")
        if self.audit_interval <= 0 or self.repair_time < 0:
            raise ValueError("the audit interval must be positive and the repair time not negative")

    def lifetime(self, rng: random.Random) -> float:
        """Seconds a newly hired supplier stays: exponential, so that ``monthly_rate`` of the
        suppliers present at any time are gone a month later."""
        if self.monthly_rate == 0:
            return math.inf
        return rng.expovariate(-math.log1p(-self.monthly_rate) / MONTH)


@dataclass(frozen=True)
class Outcome:
    """What ``customers`` customers' chunks went through in ``years``."""

    scheme: str
    churn: float
    customers: int
    years: float
    lost: int
    repairs: int
    traffic: float  # GB moved for repairs, per GB of chunk, summed over customers

    @property
    def loss_probability(self) -> float:
        return self.lost / self.customers

    @property
    def loss_upper_bound(self) -> float:
        """One-sided 95 % upper bound on the loss probability in the period: the rule of three
        (3/N) when no chunk was lost, else the exact binomial (Clopper-Pearson) bound."""
        if self.lost == 0:
            return 3 / self.customers
        return _binomial_upper_bound(self.lost, self.customers, confidence=0.95)

    @property
    def traffic_per_gb_year(self) -> float:
        return self.traffic / (self.customers * self.years)

    @property
    def repairs_per_year(self) -> float:
        return self.repairs / (self.customers * self.years)


def _binomial_upper_bound(successes: int, trials: int, confidence: float) -> float:
    """The p at which seeing at most ``successes`` in ``trials`` has probability 1 - confidence,
    found by bisection (the CDF falls as p grows)."""

    def at_most(p: float) -> float:
        log_p, log_q = math.log(p), math.log1p(-p)
        return sum(
            math.exp(
                math.lgamma(trials + 1)
                - math.lgamma(i + 1)
                - math.lgamma(trials - i + 1)
                + i * log_p
                + (trials - i) * log_q
            )
            for i in range(successes + 1)
        )

    low, high = successes / trials, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if middle >= 1 or at_most(middle) < 1 - confidence:
            high = middle
        else:
            low = middle
    return high


def simulate(
    scheme: Scheme,
    policy: RepairPolicy,
    churn: Churn,
    *,
    customers: int,
    years: float,
    seed: int,
) -> Outcome:
    """Run ``customers`` independent customers for ``years``; the same arguments give the same
    outcome."""
    if (policy.k, policy.n) != (scheme.k, scheme.n):
        raise ValueError(f"the policy's {policy.k}-of-{policy.n} is not the scheme {scheme.name}")
    rng = random.Random(f"{seed}/{scheme.name}/{churn.monthly_rate}")
    lost = repairs = 0
    traffic = 0.0
    for _ in range(customers):
        life = _CustomerLife(scheme, policy, churn, rng)
        life.run(years * YEAR)
        lost += life.lost
        repairs += life.repairs
        traffic += life.traffic
    return Outcome(scheme.name, churn.monthly_rate, customers, years, lost, repairs, traffic)


class _CustomerLife:
    """One customer's chunk from upload to the horizon, event by event: a supplier leaves, an
    audit runs, a rebuild completes. Audits that could change nothing (every supplier present
    and every fragment stored) are skipped, and the policy is shown only the records of suppliers
    that left (the others answered every audit): that is what keeps years of hours fast."""

    def __init__(
        self, scheme: Scheme, policy: RepairPolicy, churn: Churn, rng: random.Random
    ) -> None:
        self.scheme, self.policy, self.churn, self.rng = scheme, policy, churn, rng
        self.exits = [churn.lifetime(rng) for _ in range(scheme.n)]  # inf once gone
        self.gone: dict[int, SupplierHealth] = {}  # left, not replaced yet
        self.states = ["stored"] * scheme.n
        self.rebuild_at = math.inf
        self.rebuild_sources = 0
        self.rebuild_positions: list[int] = []
        self.recheck = False  # a rebuild ended: the next audit decides again
        self.lost = False
        self.repairs = 0
        self.traffic = 0.0

    def run(self, horizon: float) -> None:
        now = 0.0
        while not self.lost:
            leaving = min(self.exits)
            now = min(leaving, self._next_audit(now, leaving), self.rebuild_at)
            if now > horizon:
                return
            if now == self.rebuild_at:
                self._finish_rebuild()
            elif now == leaving:
                self._supplier_leaves(now)
            else:
                self._audit(now)

    def _next_audit(self, now: float, leaving: float) -> float:
        """The first audit that can change something: the next one while a supplier is gone or
        after a rebuild ended, else the first after the next supplier leaves."""
        if self.gone or self.recheck:
            after = now
        elif leaving == math.inf:
            return math.inf
        else:
            after = leaving
        interval = self.churn.audit_interval
        return (math.floor(after / interval) + 1) * interval

    def _supplier_leaves(self, now: float) -> None:
        position = self.exits.index(now)
        self.exits[position] = math.inf
        self.gone[position] = SupplierHealth(position)  # seen as away from the next audit on
        present = sum(
            state == "stored" and index not in self.gone for index, state in enumerate(self.states)
        )
        self.lost = self.policy.lost(present)

    def _audit(self, now: float) -> None:
        for position, health in self.gone.items():
            if health.away_since is None:
                self.gone[position] = SupplierHealth(position, away_since=now)
        replaced = self.policy.to_replace(self.gone.values(), now)
        for position in replaced:
            del self.gone[position]
            self.exits[position] = now + self.churn.lifetime(self.rng)
            self.states[position] = "missing"
        decide = self.recheck or replaced
        self.recheck = False
        if not decide or self.rebuild_at != math.inf:
            return
        healthy = healthy_fragments(self.states, set(replaced))
        if self.policy.needs_repair(len(healthy)):
            self.rebuild_at = now + self.churn.repair_time
            self.rebuild_sources = len(healthy)
            self.rebuild_positions = [
                position for position, state in enumerate(self.states) if state == "missing"
            ]

    def _finish_rebuild(self) -> None:
        """Upload what was decided to the suppliers now at those positions; one that left
        meanwhile gets nothing, and its fragment waits for the next decision."""
        self.rebuild_at = math.inf
        self.recheck = True
        uploaded = [position for position in self.rebuild_positions if position not in self.gone]
        for position in uploaded:
            self.states[position] = "stored"
        self.repairs += 1
        self.traffic += self.scheme.repair_traffic(self.rebuild_sources, len(uploaded))


def _rates(text: str) -> list[float]:
    try:
        return [float(part) / 100 for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected percentages separated by commas, e.g. 1,5,20"
        ) from None


def _schemes(text: str) -> list[Scheme]:
    try:
        return [parse_scheme(part) for part in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 <= hours < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of hours, e.g. 1 or 0.5")
    return hours * HOUR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.durability",
        description="Chunk loss and repair traffic under supplier churn, through the customer's "
        "real repair policy (bitdust/storage/repair.py).",
    )
    parser.add_argument(
        "--churn",
        type=_rates,
        default=_rates("1,5,20"),
        help="percent of suppliers leaving per month (default 1,5,20)",
    )
    parser.add_argument("--years", type=float, default=1.0, help="simulated period (default 1)")
    parser.add_argument(
        "--schemes",
        type=_schemes,
        default=_schemes("2-of-4,4-of-7,13-of-26,xor-4"),
        help="K-of-N or xor-N, comma-separated (default 2-of-4,4-of-7,13-of-26,xor-4)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=20_000,
        help="independent customers (chunks) per scheme and rate (default 20000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--audit-interval",
        type=_hours,
        default=HOUR,
        help="hours between audits, services/customer/audit-interval (default 1)",
    )
    parser.add_argument(
        "--away-limit",
        type=_hours,
        default=HOUR,
        help="hours a supplier may stay away before it is replaced, "
        "services/customer/supplier-away-limit (default 1)",
    )
    parser.add_argument(
        "--repair-time",
        type=_hours,
        default=HOUR,
        help="hours from the decision to rebuild until it is uploaded (default 1)",
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    return parser


def _run(job: tuple[Scheme, Churn, argparse.Namespace]) -> Outcome:
    scheme, churn, args = job
    return simulate(
        scheme,
        scheme.policy(args.away_limit),
        churn,
        customers=args.customers,
        years=args.years,
        seed=args.seed,
    )


_COLUMNS = (
    "scheme",
    "churn / month",
    "chunk-years",
    "chunks lost",
    "P(loss) in period",
    "95 % upper bound",
    "repair GB per GB per year",
    "repairs per chunk-year",
)


def _row(outcome: Outcome) -> list[str]:
    return [
        outcome.scheme,
        f"{outcome.churn:.0%}",
        f"{outcome.customers * outcome.years:g}",
        str(outcome.lost),
        f"{outcome.loss_probability:.2g}",
        f"{outcome.loss_upper_bound:.2g}",
        f"{outcome.traffic_per_gb_year:.3f}",
        f"{outcome.repairs_per_year:.2f}",
    ]


def render(outcomes: Sequence[Outcome], markdown: bool) -> str:
    """The outcomes as one table: Markdown, or columns aligned for a terminal."""
    rows = [list(_COLUMNS), *(_row(outcome) for outcome in outcomes)]
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(
            1, "|" + "|".join("---" if i == 0 else "--:" for i in range(len(_COLUMNS))) + "|"
        )
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.customers < 1 or args.years <= 0:
        parser.error("--customers and --years must be positive")
    try:
        jobs = [
            (scheme, Churn(rate, args.audit_interval, args.repair_time), args)
            for scheme in args.schemes
            for rate in args.churn
        ]
    except ValueError as error:
        parser.error(str(error))
    with ProcessPoolExecutor() as pool:
        outcomes = list(pool.map(_run, jobs))
    print(render(outcomes, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
