"""The demo's summary: checks of the built-in model's hallucination profile, a table, a Markdown report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POPE_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio", "false_positive_rate")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci: list[float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


@dataclass(frozen=True)
class ProfileTargets:
    """What the built-in model must show to be a useful laboratory: it perceives well, and it
    hallucinates where and why large VLMs do (co-occurrence bias on POPE, bias-breaking scenes on CHAIR;
    for the other kinds, colour, count and spatial priors on world-qa, and captions in the training
    grammar). The demo checks these; tests read them too."""

    pope_random_accuracy: float = field(default=0.85, metadata={"help": "POPE-random accuracy at least this"})
    adversarial_gap: float = field(default=0.05, metadata={
        "help": "POPE-adversarial accuracy at least this far below random (0.05: 5 points)"})
    fp_ratio: float = field(default=2.0, metadata={
        "help": "false-positive rate on co-occurring absent objects (adversarial) at least this times random's"})
    chair_ratio: float = field(default=2.0, metadata={
        "help": "CHAIR_i on bias-breaking images at least this times ordinary images'"})
    # The other kinds (checked where the world-qa results are there): it perceives each kind...
    relation_accuracy: float = field(default=0.80, metadata={
        "help": "world-qa:relation yes/no accuracy on bias-conforming items at least this"})
    count_accuracy: float = field(default=0.85, metadata={"help": "world-qa:count yes/no accuracy at least this"})
    # ...and errs for the bias's reason
    breaking_error_ratio: float = field(default=2.0, metadata={
        "help": "for colour, count and relation: the yes/no error rate on bias-breaking items at least this "
                "times the rate on conforming ones"})
    # ...and its captions follow the training grammar
    repeats_phrase: float = field(default=0.05, metadata={
        "help": "at most this share of detailed captions names a class in two phrases"})
    relation_claims_false: float = field(default=0.25, metadata={
        "help": "at most this share of the captions' relation claims is false"})


# Each kind of hallucination: its claims in captions (world-chair) and its yes/no questions (world-qa).
KIND_TASKS = {"object": "world-qa:existence", "attribute": "world-qa:attribute", "count": "world-qa:count",
              "relation": "world-qa:relation"}


def _ratio(a: float, b: float) -> float:
    """a / b; infinite when only b is 0, undefined (nan, which holds no check) when both are."""
    if b:
        return a / b
    return float("inf") if a else float("nan")


def hallucination_checks(results: dict[str, dict[str, Any]],
                         targets: ProfileTargets = ProfileTargets()) -> list[dict[str, Any]]:
    """Does the model perceive well and hallucinate for the right reasons? Each check states its
    rule, the measured values and whether it holds; nothing here is assumed, all comes from results.
    A check that the results cannot measure (no bias-breaking image among the captions, say) does
    not hold."""
    t = targets
    rnd = results["world-pope:random"]["metrics"]
    adv = results["world-pope:adversarial"]["metrics"]
    subsets = results["world-chair"]["metrics"].get("subsets", {})
    fp_ratio = _ratio(adv["false_positive_rate"], rnd["false_positive_rate"])
    checks = [
        {"check": f"POPE-random accuracy >= {100 * t.pope_random_accuracy:g} %",
         "value": f"{_pct(rnd['accuracy'])} % CI {_ci(rnd['ci95']['accuracy'])}",
         "holds": rnd["accuracy"] >= t.pope_random_accuracy},
        {"check": f"POPE-adversarial accuracy >= {100 * t.adversarial_gap:g} points below random",
         "value": f"{_pct(rnd['accuracy'] - adv['accuracy'])} points (adversarial {_pct(adv['accuracy'])} % "
                  f"CI {_ci(adv['ci95']['accuracy'])})",
         # rounded to the reported precision, so that 0.85 - 0.80 (0.04999... in floats) meets 0.05
         "holds": round(rnd["accuracy"] - adv["accuracy"], 12) >= t.adversarial_gap},
        {"check": f"false-positive rate on co-occurring absent objects >= {t.fp_ratio:g}x random absent objects",
         "value": f"{_pct(adv['false_positive_rate'])} % CI {_ci(adv['ci95']['false_positive_rate'])} vs "
                  f"{_pct(rnd['false_positive_rate'])} % CI {_ci(rnd['ci95']['false_positive_rate'])} "
                  f"= {fp_ratio:.2f}x; absent co-occurrence partners: {_pct(adv['partner_false_positive_rate'])} %",
         "holds": fp_ratio >= t.fp_ratio},
    ]
    chair_check = f"CHAIR_i on bias-breaking images >= {t.chair_ratio:g}x ordinary images"
    if "ordinary" in subsets and "breaking" in subsets:
        ordinary, breaking = subsets["ordinary"]["chair_i"], subsets["breaking"]["chair_i"]
        chair_ratio = _ratio(breaking["value"], ordinary["value"])
        checks.append({"check": chair_check,
                       "value": f"{_pct(breaking['value'])} % CI {_ci(breaking['ci95'])} vs "
                                f"{_pct(ordinary['value'])} % CI {_ci(ordinary['ci95'])} = {chair_ratio:.2f}x",
                       "holds": chair_ratio >= t.chair_ratio})
    else:
        missing = " and ".join(k for k in ("ordinary", "bias-breaking") if k.replace("bias-", "") not in subsets)
        checks.append({"check": chair_check, "value": f"not measured: no {missing} image among the captions",
                       "holds": False})
    return checks + kind_checks(results, targets)


def _yes_no(results: dict[str, dict[str, Any]], kind: str) -> dict[str, Any] | None:
    task = results.get(KIND_TASKS[kind])
    return task["metrics"].get("yes_no") if task else None


def kind_checks(results: dict[str, dict[str, Any]],
                targets: ProfileTargets = ProfileTargets()) -> list[dict[str, Any]]:
    """The checks of the other kinds (attribute, count, relation): each needs its world-qa result (and
    the caption checks world-CHAIR's claims); a check whose results are not there is left out."""
    t, checks = targets, []
    relation, count = _yes_no(results, "relation"), _yes_no(results, "count")
    if relation and "conforming" in relation["subsets"]:
        m = relation["subsets"]["conforming"]
        checks.append({"check": f"relation yes/no accuracy on bias-conforming items >= {100 * t.relation_accuracy:g} %",
                       "value": f"{_pct(m['accuracy'])} % CI {_ci(m['ci95']['accuracy'])}",
                       "holds": m["accuracy"] >= t.relation_accuracy})
    if count:
        checks.append({"check": f"count yes/no accuracy >= {100 * t.count_accuracy:g} %",
                       "value": f"{_pct(count['accuracy'])} % CI {_ci(count['ci95']['accuracy'])}",
                       "holds": count["accuracy"] >= t.count_accuracy})
    for kind, label in (("attribute", "colour"), ("count", "count"), ("relation", "relation")):
        m = _yes_no(results, kind)
        if not m:
            continue
        check = f"{label} yes/no errors on bias-breaking items >= {t.breaking_error_ratio:g}x conforming items"
        if "breaking" in m["subsets"] and "conforming" in m["subsets"]:
            b, c = (1 - m["subsets"][s]["accuracy"] for s in ("breaking", "conforming"))
            ratio = _ratio(b, c)
            checks.append({"check": check, "value": f"{_pct(b)} % vs {_pct(c)} % = {ratio:.2f}x",
                           "holds": ratio >= t.breaking_error_ratio})
        else:
            checks.append({"check": check, "value": "not measured: no bias-breaking or no conforming item",
                           "holds": False})
    chair = results.get("world-chair", {}).get("metrics", {})
    if "repeats_phrase" in chair:
        # captions that name nothing (a model answering "no" to every prompt) neither repeat nor relate: such a
        # check is not met, it is not measured
        rep, rel = chair["repeats_phrase"], chair["claims"]["relation"]
        for check, claims, value, holds, missing in (
                (f"captions naming a class in two phrases <= {100 * t.repeats_phrase:g} %",
                 chair["claims"]["object"]["n"], f"{_pct(rep['value'])} % CI {_ci(rep['ci95'])}",
                 rep["value"] <= t.repeats_phrase, "name no object"),
                (f"false relation claims in captions <= {100 * t.relation_claims_false:g} %",
                 rel["n"], f"{_pct(rel['value'])} % CI {_ci(rel['ci95'])} of {rel['n']}",
                 rel["value"] <= t.relation_claims_false, "make no relation claim")):
            checks.append({"check": check, "value": value if claims else f"not measured: the captions {missing}",
                           "holds": bool(claims) and holds})
    return checks


def kind_profile(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per kind (object, attribute, count, relation): the share of false claims of that kind in
    the captions (world-chair), the yes/no accuracy on bias-conforming and bias-breaking items and the
    ratio of their error rates, and the share of wrong answers that were the prior's (world-qa)."""
    chair = results.get("world-chair", {}).get("metrics", {})
    rows = []
    for kind, task in KIND_TASKS.items():
        row: dict[str, Any] = {"kind": kind, "task": task}
        if kind in chair.get("claims", {}):
            c = chair["claims"][kind]
            row["claims_false"] = {"value": c["value"], "ci": c["ci95"], "n": c["n"]}
        m = _yes_no(results, kind)
        if m:
            row["accuracy"] = {"value": m["accuracy"], "ci": m["ci95"]["accuracy"], "n": m["n"]}
            for s in ("conforming", "breaking"):
                if s in m["subsets"]:
                    sub = m["subsets"][s]
                    row[s] = {"value": sub["accuracy"], "ci": sub["ci95"]["accuracy"], "n": sub["n"]}
            row["breaking_error_ratio"] = m.get("breaking_error_ratio")
            row["prior_share"] = m.get("prior_share")
        if len(row) > 2:
            rows.append(row)
    return rows


KIND_COLUMNS = ("kind", "false claims in captions %", "yes/no accuracy %", "conforming items %",
                "bias-breaking items %", "errors breaking / conforming", "wrong answers = prior %")


def kind_rows(profile: list[dict[str, Any]]) -> list[list[str]]:
    """`kind_profile` as table rows of strings (KIND_COLUMNS)."""
    def cell(v):
        return f"{_pct(v['value'])} {_ci(v['ci'])}" if v else ""

    def num(x, fmt):
        return "" if x is None else fmt(x)

    return [[r["kind"], cell(r.get("claims_false")), cell(r.get("accuracy")), cell(r.get("conforming")),
             cell(r.get("breaking")), num(r.get("breaking_error_ratio"), lambda x: f"{x:.2f}x"),
             num(r.get("prior_share"), _pct)] for r in profile]


def print_summary(results: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="POPE on the world's test split (%)")
    table.add_column("split")
    for k in POPE_KEYS:
        table.add_column(k, justify="right")
    for name, r in results.items():
        if name.startswith("world-pope"):
            table.add_row(name.split(":")[1], *(_pct(r["metrics"][k]) for k in POPE_KEYS))
    console.print(table)
    chair = results["world-chair"]["metrics"]
    t2 = Table(title="CHAIR on captions of the world's test split (%)")
    for col in ("images", "n", "CHAIR_s", "CHAIR_i", "recall"):
        t2.add_column(col, justify="right")
    t2.add_row("all", str(chair["n"]), _pct(chair["chair_s"]), _pct(chair["chair_i"]), _pct(chair["recall"]))
    for name, s in chair["subsets"].items():
        t2.add_row(name, str(s["chair_i"]["n"]), _pct(s["chair_s"]["value"]), _pct(s["chair_i"]["value"]),
                   _pct(s["recall"]["value"]))
    console.print(t2)
    profile = kind_profile(results)
    if profile:
        t4 = Table(title="Each kind of hallucination (% with 95 % CI; yes/no questions from world-qa)")
        for col in KIND_COLUMNS:
            t4.add_column(col, justify="left" if col == "kind" else "right")
        for row in kind_rows(profile):
            t4.add_row(*row)
        console.print(t4)
    t3 = Table(title="Does the built-in model hallucinate for the right reasons?")
    for col in ("check", "measured", "holds"):
        t3.add_column(col)
    for c in checks:
        t3.add_row(c["check"], c["value"], "yes" if c["holds"] else "NO")
    console.print(t3)


def _delta(d: dict[str, Any] | None) -> str:
    if d is None:
        return ""
    return (f"{100 * d['value']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
            + (" *" if d["significant"] else ""))


def comparison_rows(comparison: dict[str, Any]) -> list[list[str]]:
    """Rows method, benchmark metric, value [CI], vs greedy, vs sample, speed of a comparison
    (`halluscope.compare.method_comparison`); * marks a difference whose 95 % interval leaves out 0."""
    rows = []
    for arm, benches in comparison.items():
        for bench, e in benches.items():
            ratio = e.get("speed_ratio_vs_greedy")
            rows.append([arm, f"{bench} {e['metric']}", f"{_pct(e['value'])} {_ci(e['ci'])}",
                         _delta(e.get("delta_vs_greedy")), _delta(e.get("delta_vs_sample")),
                         "" if ratio is None else f"{ratio:.2f}x"])
    return rows


COMPARISON_COLUMNS = ("method", "benchmark", "value % [95 % CI]", "vs greedy (points)", "vs sample T=1 (points)",
                      "speed vs greedy")
SIGNIFICANCE = "* significant: the 95 % paired-bootstrap interval (same images) leaves out 0"


def print_comparison(comparison: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Each method against greedy and sampling at T = 1, on the same test images",
                  caption=SIGNIFICANCE)
    for col in COMPARISON_COLUMNS:
        table.add_column(col, justify="left" if col in ("method", "benchmark") else "right")
    for row in comparison_rows(comparison):
        table.add_row(*row)
    Console().print(table)


def markdown_report(results: dict[str, dict[str, Any]], checks: list[dict[str, Any]], header: dict[str, Any],
                    comparison: dict[str, Any] | None = None) -> str:
    lines = ["# halluscope report", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()] + [""]
    lines += ["## POPE (world test split, %, 95 % bootstrap CI over images)", "",
              "| split | " + " | ".join(POPE_KEYS) + " | accuracy CI |",
              "|---" * (len(POPE_KEYS) + 2) + "|"]
    for name, r in results.items():
        if name.startswith("world-pope"):
            m = r["metrics"]
            lines.append(f"| {name.split(':')[1]} | " + " | ".join(_pct(m[k]) for k in POPE_KEYS)
                         + f" | {_ci(m['ci95']['accuracy'])} |")
    chair = results["world-chair"]["metrics"]
    lines += ["", "## CHAIR (captions of world test images, %)", "",
              "| images | n | CHAIR_s | CHAIR_i | CHAIR_i CI | recall |", "|---|---|---|---|---|---|",
              f"| all | {chair['n']} | {_pct(chair['chair_s'])} | {_pct(chair['chair_i'])} | "
              f"{_ci(chair['ci95']['chair_i'])} | {_pct(chair['recall'])} |"]
    for name, s in chair["subsets"].items():
        lines.append(f"| {name} | {s['chair_i']['n']} | {_pct(s['chair_s']['value'])} | "
                     f"{_pct(s['chair_i']['value'])} | {_ci(s['chair_i']['ci95'])} | {_pct(s['recall']['value'])} |")
    profile = kind_profile(results)
    if profile:
        lines += ["", "## Each kind of hallucination (%, 95 % CI; yes/no questions from world-qa)", "",
                  "| " + " | ".join(KIND_COLUMNS) + " |", "|---" * len(KIND_COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in kind_rows(profile)]
    lines += ["", "## Hallucination profile checks", "", "| check | measured | holds |", "|---|---|---|"]
    lines += [f"| {c['check']} | {c['value']} | {'yes' if c['holds'] else 'NO'} |" for c in checks]
    if comparison:
        lines += ["", "## Methods against greedy and sampling at T = 1 (same test images)", "",
                  "| " + " | ".join(COMPARISON_COLUMNS) + " |", "|---" * len(COMPARISON_COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(comparison)]
        lines += ["", SIGNIFICANCE + "; the figures are in report.html."]
    return "\n".join(lines) + "\n"


__all__ = ["KIND_COLUMNS", "KIND_TASKS", "POPE_KEYS", "ProfileTargets", "comparison_rows", "hallucination_checks",
           "kind_checks", "kind_profile", "kind_rows", "markdown_report", "print_comparison", "print_summary"]
