"""The figures of one run and of a comparison: pure arithmetic over ``lab.engine.Result``.

SLO attainment is the share of *all* requests (failed ones count as misses)
whose time to first token is within the target, and, when a TPOT target is
set, whose time per output token after the first is within it too (a
one-token answer has no TPOT and meets that part). Latency percentiles are
over completed requests. Replica-seconds count every pod from its creation
until it is gone (starting and draining included), over the run: from 0 to
the later of the trace's end and the last request's end. The prefix-cache
hit ratio is the engines' hits over their queries (prompt tokens found
cached over prompt tokens looked up, as vLLM counts them), all pods together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.engine import Outcome, Result

__all__ = ["PLOTS", "Slo", "at_matched_attainment", "cheapest", "families", "frontier",
           "policy_figures"]

PLOTS = ("replicas", "ttft_p99", "cost", "frontier")
"""The report's plots, by file stem (``lab.plots`` draws them; named here so that the
command line needs no matplotlib); ``frontier`` needs two runs or more."""


@dataclass(frozen=True, slots=True)
class Slo:
    ttft: float
    tpot: float | None = None
    target: float = 0.99

    def __post_init__(self) -> None:
        if not self.ttft > 0 or (self.tpot is not None and not self.tpot > 0):
            raise ValueError("--slo-ttft and --slo-tpot must be > 0")
        if not 0 < self.target <= 1:
            raise ValueError(f"--slo-target must be in (0, 1], got {self.target:g}")


def _pct(values: np.ndarray, q: float) -> float | None:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    return round(float(np.percentile(values, q)), 6)


def met(result: Result, slo: Slo) -> np.ndarray:
    """Which requests met the SLO (a boolean per request)."""
    in_time = np.nan_to_num(result.ttft, nan=math.inf) <= slo.ttft
    ok: np.ndarray = (result.outcome == Outcome.COMPLETED) & in_time
    if slo.tpot is not None:
        tpot_ok = np.isnan(result.tpot) | (np.nan_to_num(result.tpot, nan=0.0) <= slo.tpot)
        ok = ok & tpot_ok
    return ok


def policy_figures(result: Result, slo: Slo) -> dict[str, Any]:
    """One policy's row of the report and of ``summary.json``."""
    outcome = result.outcome
    n = int(outcome.size)
    completed = int((outcome == Outcome.COMPLETED).sum())
    alive = [row[1] for row in result.timeline]
    return {
        "requests": n,
        "completed": completed,
        "failed": n - completed,
        "failed_timeout": int((outcome == Outcome.TIMED_OUT).sum()),
        "failed_too_long": int((outcome == Outcome.TOO_LONG).sum()),
        "failed_killed": int((outcome == Outcome.KILLED).sum()),
        "slo_attainment": float(met(result, slo).sum()) / n if n else 0.0,
        "ttft_p50_s": _pct(result.ttft, 50),
        "ttft_p90_s": _pct(result.ttft, 90),
        "ttft_p99_s": _pct(result.ttft, 99),
        "e2e_p99_s": _pct(result.e2e, 99),
        "tpot_p99_s": _pct(result.tpot, 99),
        "replica_seconds": round(result.replica_seconds, 3),
        "replica_hours": round(result.replica_seconds / 3600, 4),
        "mean_replicas": round(result.replica_seconds / result.end_time, 4)
        if result.end_time > 0 else 0.0,
        "max_replicas": max(alive) if alive else 0,
        "scale_events": result.scale_events,
        "oscillations": result.oscillations,
        "peak_queue": result.peak_queue,
        "prefix_hit_ratio": round(result.prefix_hits / result.prefix_queries, 4)
        if result.prefix_queries else 0.0,
    }


def families(policies: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Run names by family (the name before ':'), in the runs' order."""
    grouped: dict[str, list[str]] = {}
    for name in policies:
        grouped.setdefault(name.partition(":")[0], []).append(name)
    return grouped


def _reaching(policies: Mapping[str, Mapping[str, Any]], names: list[str],
              share: float) -> dict[str, Any]:
    """Of ``names``, the cheapest run whose attainment is at least ``share``: its name as
    ``policy``, its replica-seconds and attainment; when none reaches it, ``policy`` None
    and the best run's name (``best_attainment_policy``) and figures."""
    reaching = [n for n in names if policies[n]["slo_attainment"] >= share]
    if reaching:
        name = min(reaching, key=lambda n: policies[n]["replica_seconds"])
        entry: dict[str, Any] = {"policy": name}
    else:
        name = max(names, key=lambda n: policies[n]["slo_attainment"])
        entry = {"policy": None, "best_attainment_policy": name}
    return {**entry, "replica_seconds": policies[name]["replica_seconds"],
            "slo_attainment": policies[name]["slo_attainment"]}


def _relative(entries: dict[str, dict[str, Any]], base_cost: float | None) -> None:
    """Set each entry's ``relative_to_baseline``: its replica-seconds over ``base_cost``
    (None where either has no run)."""
    for entry in entries.values():
        entry["relative_to_baseline"] = (
            round(entry["replica_seconds"] / base_cost, 4)
            if base_cost and entry["policy"] is not None else None)


def cheapest(policies: Mapping[str, Mapping[str, Any]], slo: Slo,
             baseline: str = "keda-hpa") -> dict[str, dict[str, Any]]:
    """Per policy family (the name before ':'), its cheapest run that reaches the SLO target.

    ``relative_to_baseline`` is its replica-seconds over the baseline family's
    cheapest that reaches the target (None when the baseline has none).
    """
    best = {family: _reaching(policies, names, slo.target)
            for family, names in families(policies).items()}
    base = best.get(baseline)
    _relative(best, base["replica_seconds"] if base is not None and base["policy"] is not None
              else None)
    return best


def frontier(policies: Mapping[str, Mapping[str, Any]], names: list[str]) -> list[str]:
    """The runs of ``names`` that no other of them beats on both counts: none is as
    cheap and reaches at least as much (one strictly better). Cheapest first."""
    by_cost = sorted(names, key=lambda n: (policies[n]["replica_seconds"],
                                           -policies[n]["slo_attainment"]))
    kept: list[str] = []
    for name in by_cost:
        if not kept or policies[name]["slo_attainment"] > policies[kept[-1]]["slo_attainment"]:
            kept.append(name)
    return kept


def at_matched_attainment(policies: Mapping[str, Mapping[str, Any]],
                          baseline: str = "keda-hpa") -> dict[str, Any] | None:
    """Where the baseline family reaches its best attainment ``A`` (its cheapest run
    at ``A``), each family's cheapest run that reaches ``A`` too, its replica-seconds
    relative to that baseline run's; None without a baseline run.

    The comparison the cost goal falls back on when no setting reaches the SLO
    target: as much attainment for fewer replicas. A family with no run at ``A``
    has ``policy`` None and its best run's figures for the record.
    """
    by_family = families(policies)
    if baseline not in by_family:
        return None
    names = by_family[baseline]
    reach = max(policies[n]["slo_attainment"] for n in names)
    ref = _reaching(policies, names, reach)
    rows = {family: _reaching(policies, members, reach)
            for family, members in by_family.items()}
    _relative(rows, ref["replica_seconds"])
    return {"baseline_policy": ref["policy"], "attainment": reach, "families": rows}
