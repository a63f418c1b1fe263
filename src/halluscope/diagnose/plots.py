"""One PNG per analysis (matplotlib, Agg backend), drawn from `diagnosis.json`'s entries alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..matplot import png, pyplot

KIND_COLORS = {"object": "#e05d5d", "attribute": "#e0a030", "count": "#4a8fd8", "relation": "#9a6ad8",
               "all": "#555555"}




def _empty(ax, text: str = "nothing to show") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax, names, values, errors=None, colors=None) -> None:
    vals = [v if v is not None else 0 for v in values]
    yerr = None
    if errors is not None:
        yerr = [[max(0, v - lo) for v, (lo, _) in zip(vals, errors)],
                [max(0, hi - v) for v, (_, hi) in zip(vals, errors)]]
    ax.bar(range(len(names)), vals, yerr=yerr, color=colors or "#4a8fd8", capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=0)


def plot_kinds(d: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    names = [k for k in ("object", "attribute", "count", "relation", "all") if d.get(k, {}).get("n")]
    if not names:
        _empty(ax)
    else:
        _bars(ax, [f"{k}\n(n={d[k]['n']})" for k in names], [d[k]["rate"] for k in names],
              [d[k]["ci95"] for k in names], [KIND_COLORS[k] for k in names])
        ax.set_ylabel("share of claims false")
    ax.set_title("hallucination rate per kind (95 % CI)")
    return fig


def plot_overgeneralization(d: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(d)
    if not names:
        _empty(ax)
    else:
        import numpy as np

        x = np.arange(len(names))
        for off, key, color, label in ((-0.2, "in_scene", "#e05d5d", "images of that scene"),
                                       (0.2, "other_scenes", "#9aa5b1", "images of other scenes")):
            vals = [d[n][key]["rate"] for n in names]
            lo = [max(0, v - d[n][key]["ci95"][0]) for v, n in zip(vals, names)]
            hi = [max(0, d[n][key]["ci95"][1] - v) for v, n in zip(vals, names)]
            ax.bar(x + off, vals, 0.4, yerr=[lo, hi], color=color, label=label, capsize=3)
        ax.set_xticks(x)
        ax.set_xticklabels(names)
        ax.set_ylabel("absent typical objects claimed")
        ax.legend(fontsize=8)
    ax.set_title("over-generalization by scene (RLHF-V)")
    return fig


def plot_position(d: dict[str, Any]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    s, r = d["sentence"], d["relative"]
    seen = [i for i, n in zip(s["index"], s["n"]) if n]
    axes[0].plot(seen, [s["rate"][i] for i in seen], "o-", color="#e05d5d")
    axes[0].set_xticks(seen)
    axes[0].set_xlabel("sentence index")
    axes[0].set_ylabel("share of claims false")
    mids = [(a + b) / 2 for a, b in zip(r["edges"][:-1], r["edges"][1:])]
    axes[1].plot(mids, [v if v is not None else float("nan") for v in r["rate"]], "o-", color="#555555",
                 label="all claims")
    for kind, rows in d.get("relative_by_kind", {}).items():
        rates = [v if v is not None and n >= 10 else float("nan") for v, n in zip(rows["rate"], rows["n"])]
        axes[1].plot(mids, rates, ".--", lw=1, color=KIND_COLORS[kind], label=kind)
    axes[1].set_xlabel("relative word position in the caption")
    axes[1].legend(fontsize=7)
    fig.suptitle("hallucination against position")
    return fig


def plot_base_rank(d: dict[str, Any]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    buckets = ("unshifted", "marginal", "shifted")
    import numpy as np

    x = np.arange(3)
    for off, key, color in ((-0.2, "hallucinated", "#e05d5d"), (0.2, "correct", "#4a8fd8")):
        axes[0].bar(x + off, [d[key]["buckets"][b] for b in buckets], 0.4, color=color,
                    label=f"{key} (n={d[key]['n']})")
    axes[0].set_xticks(x)
    axes[0].set_xticklabels(["0", "1-2", ">=3"])
    axes[0].set_xlabel("base rank of the chosen token")
    axes[0].legend(fontsize=8)
    names = list(d["attribution"])
    if d["hallucinated"]["n"]:
        _bars(axes[1], [n.replace("instruction_tuning", "instr.\ntuning") for n in names],
              [d["attribution"][n] for n in names], colors=["#e0a030", "#4a8fd8", "#9a6ad8", "#e05d5d"])
        axes[1].set_ylabel("share of hallucinations")
    else:
        _empty(axes[1], "no hallucinated tokens")
    axes[1].set_title("VDGD attribution")
    fig.suptitle("base rank (VDGD)")
    return fig


def _hist(ax, summary: dict[str, Any], label: str, color: str, offset: float) -> None:
    h = summary.get("histogram", {})
    n = max(1, summary["n"])
    ks = [int(k) for k in h]
    ax.bar([k + offset for k in ks], [h[str(k)] / n for k in ks], 0.4, color=color, label=f"{label} (n={summary['n']})")


def plot_logit_elbow(d: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    _hist(ax, d["hallucinated"], "hallucinated", "#e05d5d", -0.2)
    _hist(ax, d["correct"], "correct", "#4a8fd8", 0.2)
    ax.set_xlabel("confident candidates (elbow k)")
    ax.set_ylabel("share of first tokens")
    ax.legend(fontsize=8)
    ax.set_title("logit elbow (VDGD)")
    return fig


def plot_feature_stability(d: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    v, h = d.get("relative_variance", []), d.get("hallucination_rate")
    if not v:
        _empty(ax)
    elif h is not None:
        pts = [(a, b) for a, b in zip(v, h) if b is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.6, color="#4a8fd8")
        ax.axvline(d["high_threshold"], color="#e05d5d", ls="--", lw=1, label="high-variance threshold")
        ax.set_xlabel("relative variance of vision features under masking")
        ax.set_ylabel("image's hallucination rate")
        ax.legend(fontsize=8)
    else:
        ax.hist(v, bins=20, color="#4a8fd8")
        ax.set_xlabel("relative variance")
    ax.set_title(f"feature stability (VTI): {100 * d.get('mask_ratio', 0):.0f} % patches masked")
    return fig


def plot_modality_gap(d: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    proj = d.get("projection")
    if not proj:
        _empty(ax)
    else:
        for key, color in (("image", "#999999"), ("correct", "#4a8fd8"), ("hallucinated", "#e05d5d")):
            pts = proj[key]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, alpha=0.6, color=color, label=key)
        ax.legend(fontsize=8)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    ax.set_title(f"modality gap (HACL Fig. 1); probe AUC {d.get('probe_auc', float('nan')):.2f}")
    return fig


def plot_language_prior(d: dict[str, Any]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    conds = ("image", "no_image", "noise")
    if not d.get("n"):
        _empty(axes[0])
        _empty(axes[1])
        return fig
    _bars(axes[0], ["image", "no image", "noise"], [d["yes_rate"][c] for c in conds],
          colors=["#4a8fd8", "#e05d5d", "#e0a030"])
    axes[0].set_ylabel('"yes" rate')
    p = d["false_positives_persist"]
    _bars(axes[1], ["agree:\nno image", "agree:\nnoise", "FP persist:\nno image", "FP persist:\nnoise"],
          [d["agreement_with_image"]["no_image"], d["agreement_with_image"]["noise"], p["no_image"], p["noise"]],
          colors=["#9aa5b1", "#9aa5b1", "#e05d5d", "#e0a030"])
    axes[1].tick_params(axis="x", labelsize=7)
    fig.suptitle(f"language prior (VCD): {d['n']} questions, {d['false_positives']} false positives")
    return fig


def plot_attention(d: dict[str, Any]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    if not d.get("eager"):
        _empty(axes[0], "no eager attention")
        _empty(axes[1], "")
        return fig
    a = d["along_caption"]
    mids = [(x + y) / 2 for x, y in zip(a["edges"][:-1], a["edges"][1:])]
    axes[0].plot(mids, [v if v is not None else float("nan") for v in a["mean"]], "o-", color="#4a8fd8")
    axes[0].set_xlabel("relative position in the caption")
    axes[0].set_ylabel("attention share on image tokens")
    _bars(axes[1], [f"hallucinated\n(n={d['hallucinated']['n']})", f"correct\n(n={d['correct']['n']})"],
          [d["hallucinated"]["mean"], d["correct"]["mean"]], colors=["#e05d5d", "#4a8fd8"])
    fig.suptitle("attention to the image")
    return fig


PLOTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "kinds": plot_kinds, "overgeneralization": plot_overgeneralization, "position": plot_position,
    "base_rank": plot_base_rank, "logit_elbow": plot_logit_elbow, "feature_stability": plot_feature_stability,
    "modality_gap": plot_modality_gap, "language_prior": plot_language_prior, "attention_to_image": plot_attention,
}


def write_plots(diagnosis: dict[str, Any], folder: str | Path) -> dict[str, str]:
    """{analysis: PNG file name} of every analysis in `diagnosis` with a result, written into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, plot in PLOTS.items():
        d = diagnosis.get(key)
        if not isinstance(d, dict) or d.get("skipped"):
            continue
        (folder / f"{key}.png").write_bytes(png(plot(d)))
        out[key] = f"{key}.png"
    return out


__all__ = ["PLOTS", "write_plots"]
