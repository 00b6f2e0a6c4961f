"""Plot one column of RESULTS.md-style tables: ``python -m bench.routing.plot``.

``--table LABEL=FILE`` (repeatable) reads every markdown table row of FILE
whose header has the ``--group`` columns, ``routing`` and ``--value``; the
plot has one panel per group (``A: Mooncake conversation``, or ``mooncake-conv,
time scale 0.2``), one cluster of bars per routing, one bar per LABEL (the mean where a
table has a routing twice). Bold (``**x**``) is ignored.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _cells(line: str) -> list[str]:
    return [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]


def read(text: str, *, group: list[str], value: str) -> dict[str, dict[str, list[float]]]:
    """``{group: {routing: [values]}}`` from every table of ``text`` with those columns."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            continue
        if set(cells) <= {"---", ""} or not {*group, "routing", value} <= set(header):
            continue
        row = dict(zip(header, cells, strict=False))
        try:
            v = float(row[value])
        except ValueError:
            continue
        name = ", ".join([row[group[0]], *(f"{g} {row[g]}" for g in group[1:])])
        out[name][row["routing"]].append(v)
    return out


def plot(tables: dict[str, dict[str, dict[str, list[float]]]], *, value: str, out: Path,
         title: str, highlight: str | None = None) -> None:
    groups = list(dict.fromkeys(g for t in tables.values() for g in t))
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 2.8 * len(groups)), squeeze=False)
    labels = list(tables)
    width = 0.8 / max(1, len(labels))
    for ax, g in zip(axes[:, 0], groups, strict=True):
        routings = list(dict.fromkeys(r for t in tables.values() for r in t.get(g, {})))
        for k, label in enumerate(labels):
            rows = tables[label].get(g, {})
            xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(routings))]
            ys = [sum(rows[r]) / len(rows[r]) if r in rows else 0.0 for r in routings]
            bars = ax.bar(xs, ys, width=width, label=label)
            if highlight in routings:
                bars[routings.index(highlight)].set_color("tab:orange")
        ax.set_xticks(range(len(routings)), routings, rotation=20, fontsize=8)
        for tick in ax.get_xticklabels():
            if tick.get_text() == highlight:
                tick.set_fontweight("bold")
        ax.set_ylabel(value, fontsize=8)
        ax.set_title(g, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(title, fontsize=10, y=0.995)
    if len(labels) > 1:  # one table needs no legend
        head = 1 - 0.7 / (2.8 * len(groups))  # room for the title and legend: 0.7 in
        fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.98), fontsize=8,
                   ncol=1, frameon=False)
    else:
        head = 1 - 0.35 / (2.8 * len(groups))
    fig.tight_layout(rect=(0, 0, 1, head))
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", required=True, metavar="LABEL=FILE")
    parser.add_argument("--group", default="workload", help="column(s), comma-separated")
    parser.add_argument("--value", default="TTFT p99 ms")
    parser.add_argument("--title", default="")
    parser.add_argument("--highlight", default=None,
                        help="a routing whose bars stand out (another colour, a bold label)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    tables = {}
    for spec in args.table:
        label, sep, path = spec.partition("=")
        if not sep or not label:
            parser.error(f"--table {spec!r}: expected LABEL=FILE")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            parser.error(f"--table {spec!r}: {e.strerror}")
        tables[label] = read(text, group=args.group.split(","), value=args.value)
        if not tables[label]:
            parser.error(f"--table {spec!r}: no table with columns {args.group}, routing, "
                         f"{args.value}")
    plot(tables, value=args.value, out=args.out, title=args.title, highlight=args.highlight)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
