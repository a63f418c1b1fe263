"""A plain reading of each analysis: one or two sentences from its numbers, for diagnosis.md and the report."""

from __future__ import annotations

from typing import Any

TITLES = {
    "kinds": "Hallucination per kind",
    "overgeneralization": "Over-generalization by scene (RLHF-V)",
    "position": "Hallucination against position in the caption",
    "base_rank": "Base rank: language or vision? (VDGD)",
    "logit_elbow": "Confident candidates at hallucinated tokens (VDGD's logit elbow)",
    "feature_stability": "Vision features under small perturbations (VTI)",
    "modality_gap": "Modality gap between image and caption representations (HACL)",
    "language_prior": "Reliance on the language prior (VCD)",
    "attention_to_image": "Attention to the image along the caption",
}


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _prior_verdict(persist: float | None) -> str:
    if persist is None:
        return "."
    if persist >= 0.5:
        return ": most false positives are what the language prior alone says."
    return ": few false positives are the language prior alone; the image (or its noise) brings them in."


def reading(key: str, d: dict[str, Any]) -> str:
    """One plain paragraph about analysis `key`'s result `d`."""
    if not isinstance(d, dict) or d.get("skipped"):
        return (d or {}).get("note", "Not run.") if isinstance(d, dict) else "Not run."
    if key == "kinds":
        made = [k for k in ("object", "attribute", "count", "relation") if d[k]["n"]]
        if not made:
            return "The captions make no claims that could be judged."
        worst = max(made, key=lambda k: d[k]["rate"])
        parts = ", ".join(f"{k} {_p(d[k]['rate'])} (n={d[k]['n']})" for k in made)
        return f"False claims per kind: {parts}. The most error-prone kind is {worst}."
    if key == "overgeneralization":
        rows = [(n, e) for n, e in d.items() if e["ratio"] is not None]
        if not rows:
            return "No scene's typical objects were hallucinated often enough to compare scenes."
        text = "; ".join(f"{n}: {_p(e['in_scene']['rate'])} in its own scenes vs {_p(e['other_scenes']['rate'])} "
                         f"elsewhere (x{e['ratio']:.1f})" for n, e in rows)
        over = [n for n, e in rows if e["ratio"] > 1 and e["in_scene"]["ci95"][0] > e["other_scenes"]["ci95"][1]]
        verdict = ("The model over-generalizes: it claims a scene's typical objects where the scene is "
                   f"({', '.join(over)}, intervals apart)." if over
                   else "No scene shows over-generalization beyond its interval.")
        return f"Absent typical objects claimed: {text}. {verdict}"
    if key == "position":
        s, r = d["sentence"], d["relative"]
        pairs = [(i, v) for i, v, n in zip(s["index"], s["rate"], s["n"]) if v is not None and n >= 10]
        rel = [v for v in r["rate"] if v is not None]
        text = ", ".join(f"sentence {i}: {_p(v)}" for i, v in pairs) or "too few claims per sentence"
        trend = ""
        if len(rel) >= 2:
            trend = (" Hallucination rises towards the end of the caption." if rel[-1] > rel[0]
                     else " Hallucination does not rise towards the end of the caption.")
        within = []
        for kind, rows in d.get("relative_by_kind", {}).items():
            vals = [v for v, n in zip(rows["rate"], rows["n"]) if v is not None and n >= 10]
            if len(vals) >= 2:
                within.append(f"{kind} {_p(vals[0])} -> {_p(vals[-1])}")
        within_text = f" Within each kind, first to last bin: {', '.join(within)}." if within else ""
        return (f"False claims by sentence: {text}; by relative position {', '.join(_p(v) for v in rel)}.{trend}"
                + within_text)
    if key == "base_rank":
        h, c = d["hallucinated"], d["correct"]
        if not h["n"]:
            return "No hallucinated token to rank."
        a = d["attribution"]
        return (f"Under the base LM without the image ({d['base']}), {_p(h['buckets']['unshifted'])} of hallucinated "
                f"first tokens are unshifted (rank 0), {_p(h['buckets']['marginal'])} marginal and "
                f"{_p(h['buckets']['shifted'])} shifted (correct tokens: {_p(c['buckets']['unshifted'])} unshifted). "
                f"Attribution: language {_p(a['language'])}, vision {_p(a['vision'])}, style {_p(a['style'])}, "
                f"instruction tuning {_p(a['instruction_tuning'])}"
                + ("" if d["instruction_tuning_checked"] else " (not checked: no training captions)") + ".")
    if key == "logit_elbow":
        h, c = d["hallucinated"], d["correct"]
        return (f"Confident candidates (elbow k): {_f(h['mean'])} on average at hallucinated first tokens "
                f"(n={h['n']}) vs {_f(c['mean'])} at correct ones (n={c['n']})."
                + (" Hallucinations come where the model hesitates between more candidates."
                   if h["mean"] is not None and c["mean"] is not None and h["mean"] > c["mean"] else ""))
    if key == "feature_stability":
        corr = d.get("correlation", {})
        return (f"Relative variance of the vision features with {100 * d['mask_ratio']:.0f} % of patches masked: "
                f"median {_f(d['median'], 4)}; {_p(d['share_high'])} of images are high-variance (> "
                f"{_f(d['high_threshold'], 4)}). Correlation with the image's hallucination rate: Spearman "
                f"{_f(corr.get('spearman'))} (n={corr.get('n', 0)}); hallucination rate {_p(d.get('rate_high'))} on "
                f"high-variance images vs {_p(d.get('rate_rest'))} on the rest.")
    if key == "modality_gap":
        if not d.get("n"):
            return d.get("note", "No caption pairs.")
        cd = d["centroid_distance"]
        return (f"Centroid distance image-to-correct {_f(cd['image_correct'])}, image-to-hallucinated "
                f"{_f(cd['image_hallucinated'])}, correct-to-hallucinated {_f(cd['correct_hallucinated'])} (mean "
                f"state norm {_f(d['mean_norm'])}). A linear probe tells correct from hallucinated captions with "
                f"AUC {_f(d['probe_auc'])} (0.5: no separation).")
    if key == "language_prior":
        if not d.get("n"):
            return "No questions."
        y, ag, fp = d["yes_rate"], d["agreement_with_image"], d["false_positives_persist"]
        return (f'"Yes" rate {_p(y["image"])} with the image, {_p(y["no_image"])} without it, {_p(y["noise"])} with '
                f"a noised image; answers without the image agree with those given it {_p(ag['no_image'])} of the "
                f"time. Of {d['false_positives']} false positives with the image, {_p(fp['no_image'])} persist "
                f"without it and {_p(fp['noise'])} with noise" + _prior_verdict(fp["no_image"]))
    if key == "attention_to_image":
        if not d.get("eager"):
            return d.get("note", "No eager attention.")
        a = d["along_caption"]["mean"]
        return (f"Attention share on image tokens: {_p(d['hallucinated']['mean'])} at hallucinated first tokens vs "
                f"{_p(d['correct']['mean'])} at correct ones; along the caption it goes "
                f"{' -> '.join(_p(v) for v in a)}.")
    return ""


__all__ = ["TITLES", "reading"]
