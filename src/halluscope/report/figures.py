"""The report's plots (matplotlib, Agg backend): each function returns (PNG bytes, the plotted data
as JSON-able dicts), so every figure is also in results.json."""

from __future__ import annotations

from typing import Any

from ..matplot import png, pyplot

BENCH_LABELS = {"world-pope:random": "POPE random acc.", "world-pope:popular": "POPE popular acc.",
                "world-pope:adversarial": "POPE adversarial acc.", "world-chair": "CHAIR_i"}


def forest_data(comparison: dict[str, Any], baseline: str) -> list[dict[str, Any]]:
    """Rows (arm, benchmark, delta, ci, significant, better) of every arm's difference to `baseline`."""
    rows = []
    for arm, benches in comparison.items():
        for bench, e in benches.items():
            d = e.get(f"delta_vs_{baseline}")
            if d is not None:
                rows.append({"arm": arm, "benchmark": bench, "metric": e["metric"], "delta": d["value"],
                             "ci": d["ci"], "significant": d["significant"], "better": d["better"]})
    return rows


def forest_plot(comparison: dict[str, Any], baselines: tuple[str, ...]) -> tuple[bytes, dict[str, Any]]:
    """One panel per benchmark: each arm's paired difference to each baseline, in points, with its
    95 % interval; green where the arm is significantly better, red where worse."""
    plt = pyplot()
    data = {b: forest_data(comparison, b) for b in baselines}
    benches = list(dict.fromkeys(r["benchmark"] for rows in data.values() for r in rows))
    benches.sort(key=lambda b: list(BENCH_LABELS).index(b) if b in BENCH_LABELS else len(BENCH_LABELS))
    arms = list(dict.fromkeys(r["arm"] for rows in data.values() for r in rows))
    fig, axes = plt.subplots(1, max(len(benches), 1), figsize=(3.2 * max(len(benches), 1), 0.45 * len(arms) + 1.4),
                             sharey=True, squeeze=False)
    markers = dict(zip(baselines, "os^"))
    for ax, bench in zip(axes[0], benches):
        for k, base in enumerate(baselines):
            for r in (r for r in data[base] if r["benchmark"] == bench):
                y = arms.index(r["arm"]) + (k - (len(baselines) - 1) / 2) * 0.25
                color = {"a": "#1a9850", "b": "#d73027"}.get(r["better"], "#555555")
                lo, hi = (100 * v for v in r["ci"])
                ax.errorbar(100 * r["delta"], y, xerr=[[100 * r["delta"] - lo], [hi - 100 * r["delta"]]],
                            fmt=markers[base], color=color, capsize=2, ms=5,
                            label=f"vs {base}" if bench == benches[0] and r["arm"] == arms[-1] else None)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(BENCH_LABELS.get(bench, bench), fontsize=9)
        ax.set_xlabel("difference (points)", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(range(len(arms)), arms)
    axes[0][0].invert_yaxis()
    handles = [plt.Line2D([], [], marker=markers[b], ls="", color="#555555", label=f"vs {b}") for b in baselines]
    fig.legend(handles=handles, loc="lower center", ncol=len(baselines), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("Paired differences with 95 % intervals (green: better, red: worse, grey: not significant)",
                 fontsize=9, y=1.03)
    rows = [r | {"baseline": b} for b in baselines for r in data[b]]
    return png(fig, dpi=110), {"baselines": list(baselines), "rows": rows}


def cost_benefit(comparison: dict[str, Any], benches: tuple[str, ...] = ("world-chair", "world-pope:adversarial")
                 ) -> tuple[bytes, dict[str, Any]]:
    """Hallucination (or accuracy) against throughput relative to greedy, one point per arm with its
    95 % interval."""
    plt = pyplot()
    benches = tuple(b for b in benches if any(b in row for row in comparison.values()))
    points = [{"arm": arm, "benchmark": b, "metric": row[b]["metric"], "value": row[b]["value"], "ci": row[b]["ci"],
               "speed_ratio_vs_greedy": row[b].get("speed_ratio_vs_greedy")}
              for arm, row in comparison.items() for b in benches if b in row]
    fig, axes = plt.subplots(1, max(len(benches), 1), figsize=(4.2 * max(len(benches), 1), 3.4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for p in (p for p in points if p["benchmark"] == bench and p["speed_ratio_vs_greedy"] is not None):
            v, (lo, hi) = 100 * p["value"], (100 * c for c in p["ci"])
            ax.errorbar(p["speed_ratio_vs_greedy"], v, yerr=[[v - lo], [hi - v]], fmt="o", capsize=2, ms=5)
            ax.annotate(p["arm"], (p["speed_ratio_vs_greedy"], v), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        metric = next((p["metric"] for p in points if p["benchmark"] == bench), "")
        ax.set_xlabel("tokens per second / greedy's", fontsize=8)
        ax.set_ylabel(f"{metric} (%)" + (" - lower is better" if "chair" in bench else " - higher is better"),
                      fontsize=8)
        ax.set_title(BENCH_LABELS.get(bench, bench), fontsize=9)
        ax.axvline(1, color="grey", lw=0.6, ls="--")
        ax.tick_params(labelsize=8)
    fig.suptitle("What each method buys and what it costs", fontsize=9, y=1.03)
    return png(fig, dpi=110), {"points": points}
