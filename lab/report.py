"""Write a comparison: ``summary.json``, ``report.md`` and the plots, in one folder."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from lab.ceiling import Ceiling
from lab.engine import Result
from lab.plots import plot_all
from lab.summary import (
    PLOTS,
    Slo,
    at_matched_attainment,
    cheapest,
    families,
    frontier,
    policy_figures,
)
from lab.traces import Trace

__all__ = ["ceiling_sentence", "write_report"]

_COLUMNS = [
    ("policy", None), ("SLO attainment", "slo_attainment"), ("TTFT p50 s", "ttft_p50_s"),
    ("p90 s", "ttft_p90_s"), ("p99 s", "ttft_p99_s"), ("e2e p99 s", "e2e_p99_s"),
    ("failed", "failed"), ("(too long)", "failed_too_long"),
    ("replica-s", "replica_seconds"), ("replica-h", "replica_hours"),
    ("max pods", "max_replicas"), ("scale events", "scale_events"),
    ("oscillations", "oscillations"), ("peak queue", "peak_queue"),
    ("prefix hit ratio", "prefix_hit_ratio"),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _family_row(family: str, entry: Mapping[str, Any], *, attainment: bool) -> str:
    """A family's row of a comparison table: its chosen run (or its best, when none
    qualifies), with the run's attainment when ``attainment``."""
    if entry["policy"] is None:
        blanks = " - |" * (3 if attainment else 2)
        return (f"| {family} | none (best: `{entry['best_attainment_policy']}` at "
                f"{entry['slo_attainment']:.2%}) |{blanks}")
    rel = entry["relative_to_baseline"]
    reached = f" {entry['slo_attainment']:.2%} |" if attainment else ""
    return (f"| {family} | `{entry['policy']}` |{reached} {entry['replica_seconds']:.0f} | "
            f"{'-' if rel is None else f'{rel:.3g}x'} |")


def ceiling_sentence(ceiling: Mapping[str, Any]) -> str:
    """The ceiling (``lab.ceiling.Ceiling.to_json``) in one sentence."""
    return (f"The most any fleet reaches: {ceiling['attainment']:.2%} ({ceiling['attainable']} "
            f"of {ceiling['requests']}; {ceiling['slow_alone']} miss the target even alone on "
            f"an idle pod holding every earlier prompt's blocks, {ceiling['too_long']} are "
            "longer than a pod takes; `lab.ceiling`).")


def _ceiling_line(ceiling: Mapping[str, Any] | None) -> list[str]:
    return [] if ceiling is None else [ceiling_sentence(ceiling)]


def _markdown(summary: Mapping[str, Any], plots: list[Path]) -> str:
    trace = summary["trace"]
    settings = summary["settings"]
    slo = settings["slo"]
    lines = [
        "# Scaling lab report", "",
        f"Trace `{trace['name']}`: {trace['requests']} requests over {trace['duration_s']:.0f} s "
        f"({trace['mean_rate_per_s']:.3g} requests/s, prompt {trace['mean_prompt_tokens']:.0f} "
        f"and output {trace['mean_output_tokens']:.0f} tokens on average).",
        f"Profile `{settings['profile']['name']}`; cold start {settings['cold_start']} s; "
        f"routing {settings['routing']}; scrape every {settings['scrape_interval']:g} s"
        + (f", {lead:g} s before the decisions"
           if (lead := settings.get("scrape_lead")) is not None else "")
        + f"; gateway hold {settings['hold_timeout']:g} s; seed {settings['seed']}.",
        f"SLO: TTFT <= {slo['ttft']:g} s"
        + (f" and TPOT <= {slo['tpot']:g} s" if slo["tpot"] is not None else "")
        + f", target {slo['target']:.0%} of all requests (failures count as misses).",
        *_ceiling_line(summary.get("ceiling")), "",
        "| " + " | ".join(c for c, _ in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for name, row in summary["policies"].items():
        cells = [f"`{name}`", f"{row['slo_attainment']:.2%}"] + [
            _cell(row[k]) for _, k in _COLUMNS[2:] if k is not None]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"## Cheapest run of each policy that reaches {slo['target']:.0%}", "",
              "| policy family | cheapest reaching the target | replica-s | relative to "
              f"the cheapest `{summary['baseline']}` |", "|---|---|---|---|"]
    lines += [_family_row(family, entry, attainment=False)
              for family, entry in summary["cheapest"].items()]
    matched = summary.get("matched")
    if matched is not None:
        lines += ["", f"## At the baseline's best attainment ({matched['attainment']:.2%}, "
                  f"`{matched['baseline_policy']}`)", "",
                  f"No `{summary['baseline']}` setting reaches {slo['target']:.0%}: each "
                  "family's cheapest run that reaches as much as the baseline's best.", "",
                  "| policy family | cheapest reaching it | attainment | replica-s | "
                  "relative to the baseline's |", "|---|---|---|---|---|"]
        lines += [_family_row(family, entry, attainment=True)
                  for family, entry in matched["families"].items()]
    if any(p.stem == "frontier" for p in plots):
        lines += ["", "## Each family's frontier (the numbers of frontier.png)", "",
                  "Runs no other run of the family beats on both cost and attainment, "
                  "cheapest first.", "",
                  "| family | # | policy | attainment | replica-h |", "|---|---|---|---|---|"]
        rows = summary["policies"]
        for family, names in families(rows).items():
            for i, name in enumerate(frontier(rows, names), start=1):
                lines.append(f"| {family} | {i} | `{name}` | {rows[name]['slo_attainment']:.2%} "
                             f"| {rows[name]['replica_hours']:.4g} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines.append("")
    return "\n".join(lines)


def write_report(out: Path, trace: Trace, results: Mapping[str, Result], slo: Slo, *,
                 settings: Mapping[str, Any], baseline: str = "keda-hpa",
                 plots_wanted: Collection[str] = PLOTS,
                 ceiling: Ceiling | None = None) -> dict[str, Any]:
    """Write everything under ``out`` (created): the summary, the report and the plots
    named in ``plots_wanted`` (``lab.plots.PLOTS``); return the summary written to
    summary.json. ``ceiling``: the trace's SLO ceiling (``lab.ceiling``), when computed."""
    out.mkdir(parents=True, exist_ok=True)
    policies = {name: policy_figures(result, slo) for name, result in results.items()}
    summary: dict[str, Any] = {
        "trace": trace.describe(),
        "settings": {**settings, "slo": {"ttft": slo.ttft, "tpot": slo.tpot,
                                         "target": slo.target}},
        "policies": policies,
        "baseline": baseline,
        "cheapest": cheapest(policies, slo, baseline),
    }
    if ceiling is not None:
        summary["ceiling"] = ceiling.to_json()
    best = summary["cheapest"].get(baseline)
    if best is not None and best["policy"] is None:
        summary["matched"] = at_matched_attainment(policies, baseline)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plots = plot_all(trace, results, policies, slo_ttft=slo.ttft, target=slo.target, out=out,
                     which=plots_wanted)
    (out / "report.md").write_text(_markdown(summary, plots), encoding="utf-8")
    return summary
