"""A study's dose-response curves: one PNG per metric (the mean over seeds at each level with its 95 % interval,
each seed as a dot) and an overview of the metrics the literature makes a claim about, drawn from study.json
alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..matplot import png, pyplot

VERDICT_COLORS = {"agrees": "#2e8b57", "disagrees": "#c0392b", "no clear effect": "#777777"}


def _curve(ax, result: dict[str, Any], metric: str) -> None:
    levels = result["levels"]
    s = result["summary"]
    xs, means, lows, highs = [], [], [], []
    for i, level in enumerate(levels):
        e = s["levels"][level][metric]
        for v in e["per_seed"]:
            if v is not None:
                ax.plot(i, 100 * v, "o", color="#9bbbe0", ms=4, zorder=1)
        if e["mean"] is None:
            continue
        xs.append(i)
        means.append(100 * e["mean"])
        lo, hi = e["ci95"] or (e["mean"], e["mean"])
        lo, hi = max(lo, 0.0), min(hi, 1.0)  # every metric is a share; a t-interval over 3 seeds can pass its bounds
        lows.append(100 * (e["mean"] - lo))
        highs.append(100 * (hi - e["mean"]))
    ax.errorbar(xs, means, yerr=[lows, highs], color="#1f5fa8", marker="s", ms=5, capsize=4, zorder=2)
    ax.set_xticks(range(len(levels)))
    long = sum(map(len, levels)) > 24  # names such as query-16 would run into each other side by side
    ax.set_xticklabels(levels, rotation=30 if long else 0, ha="right" if long else "center")
    eff = s["effects"][metric]
    ax.set_title(f"{result['metric_names'][metric]}\n{eff['verdict']}", fontsize=9,
                 color=VERDICT_COLORS.get(eff["verdict"], "#333333"))
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)


def plot_metric(result: dict[str, Any], metric: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    _curve(ax, result, metric)
    ax.set_xlabel(result["sets"].split(" (")[0], fontsize=8)
    return fig


def plot_overview(result: dict[str, Any], metrics: list[str]):
    plt = pyplot()
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        _curve(ax, result, metric)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{result['cause']}: {result['sets']} (mean over seeds, 95 % t-interval; dots: seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def write_plots(result: dict[str, Any], folder: str | Path) -> dict[str, str]:
    """OUTPUT/plots/<metric>.png for every metric with a value, and overview.png; returns metric -> file name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s = result["summary"]
    measured = [m for m in result["metric_names"] if any(s["levels"][lv][m]["mean"] is not None
                                                          for lv in result["levels"])]
    files = {}
    for metric in measured:
        (folder / f"{metric}.png").write_bytes(png(plot_metric(result, metric)))
        files[metric] = f"{metric}.png"
    claimed = [m for m in measured if s["effects"][m]["expected_sign"] is not None] or measured[:4]
    (folder / "overview.png").write_bytes(png(plot_overview(result, claimed), dpi=90))
    files["overview"] = "overview.png"
    return files


__all__ = ["plot_metric", "plot_overview", "write_plots"]
