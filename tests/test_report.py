"""The demo's verdict: each of the four profile checks on synthetic results just either side of its
threshold, thresholds read from ProfileTargets, and the report writers on the same results."""

from __future__ import annotations

from dataclasses import replace

import pytest

from halluscope.report import ProfileTargets, hallucination_checks, markdown_report, print_summary

GOOD = {"random_accuracy": 0.90, "adversarial_accuracy": 0.80, "random_fp": 0.05, "adversarial_fp": 0.20,
        "ordinary_chair_i": 0.05, "breaking_chair_i": 0.20}


def pope(accuracy: float, fp: float) -> dict:
    keys = ("accuracy", "precision", "recall", "f1", "yes_ratio", "false_positive_rate")
    m = {k: 0.5 for k in keys} | {"accuracy": accuracy, "false_positive_rate": fp, "partner_false_positive_rate": fp}
    m["ci95"] = {"accuracy": [accuracy - 0.01, accuracy + 0.01], "false_positive_rate": [fp, fp]}
    return {"metrics": m}


def chair(subsets: dict[str, float]) -> dict:
    def stat(v):
        return {"value": v, "ci95": [v, v], "n": 10}

    return {"metrics": {"n": 20, "chair_s": 0.3, "chair_i": 0.1, "recall": 0.8, "ci95": {"chair_i": [0.1, 0.1]},
                        "subsets": {k: {"chair_s": stat(v), "chair_i": stat(v), "recall": stat(0.8)}
                                    for k, v in subsets.items()}}}


def results(**overrides: float) -> dict:
    v = GOOD | overrides
    subsets = {k: v[f"{k}_chair_i"] for k in ("ordinary", "breaking") if v.get(f"{k}_chair_i") is not None}
    return {"world-pope:random": pope(v["random_accuracy"], v["random_fp"]),
            "world-pope:popular": pope(v["random_accuracy"], v["random_fp"]),
            "world-pope:adversarial": pope(v["adversarial_accuracy"], v["adversarial_fp"]),
            "world-chair": chair(subsets)}


def holds(res: dict, targets: ProfileTargets | None = None) -> list[bool]:
    return [c["holds"] for c in hallucination_checks(res, targets or ProfileTargets())]


def test_the_demos_thresholds():
    t = ProfileTargets()
    assert (t.pope_random_accuracy, t.adversarial_gap, t.fp_ratio, t.chair_ratio) == (0.85, 0.05, 2.0, 2.0)
    assert [c["check"] for c in hallucination_checks(results())] == [
        "POPE-random accuracy >= 85 %",
        "POPE-adversarial accuracy >= 5 points below random",
        "false-positive rate on co-occurring absent objects >= 2x random absent objects",
        "CHAIR_i on bias-breaking images >= 2x ordinary images",
    ]


# (check index, overrides just meeting the target, overrides just missing it); the other values stay GOOD.
EDGES = [
    (0, {"random_accuracy": 0.85, "adversarial_accuracy": 0.75},
     {"random_accuracy": 0.849, "adversarial_accuracy": 0.75}),
    (1, {"adversarial_accuracy": 0.85}, {"adversarial_accuracy": 0.851}),  # random 0.90: gap 5.0 vs 4.9 points
    (2, {"adversarial_fp": 0.10}, {"adversarial_fp": 0.099}),  # random fp 0.05: 2.0x vs 1.98x
    (3, {"breaking_chair_i": 0.10}, {"breaking_chair_i": 0.0999}),  # ordinary 0.05: 2.0x vs 1.998x
]


@pytest.mark.parametrize("index,meets,misses", EDGES)
def test_each_check_on_both_sides_of_its_threshold(index, meets, misses):
    assert holds(results()) == [True] * 4
    expected = [True] * 4
    assert holds(results(**meets)) == expected
    expected[index] = False
    assert holds(results(**misses)) == expected


def test_the_gap_of_exactly_five_points_meets_it_despite_float_rounding():
    assert 0.85 - 0.80 < 0.05  # the float subtraction alone would miss it
    assert holds(results(random_accuracy=0.85, adversarial_accuracy=0.80))[1]


def test_targets_are_read_from_the_dataclass():
    res = results()  # accuracy 0.90, gap 10 points, fp ratio 4x, CHAIR ratio 4x
    strict = ProfileTargets(pope_random_accuracy=0.95, adversarial_gap=0.11, fp_ratio=4.5, chair_ratio=4.5)
    assert holds(res, strict) == [False] * 4
    assert holds(res, replace(strict, fp_ratio=4.0)) == [False, False, True, False]
    assert "95 %" in hallucination_checks(res, strict)[0]["check"]


def test_zero_denominators():
    # No false positive on random objects but some on adversarial ones: infinitely many times more.
    assert holds(results(random_fp=0.0))[2]
    # None on either: the ratio is undefined and the check does not hold.
    assert not holds(results(random_fp=0.0, adversarial_fp=0.0))[2]
    assert holds(results(ordinary_chair_i=0.0))[3]
    assert not holds(results(ordinary_chair_i=0.0, breaking_chair_i=0.0))[3]


def test_a_missing_chair_subset_is_not_measured_and_does_not_hold():
    checks = hallucination_checks(results(breaking_chair_i=None))
    assert not checks[3]["holds"] and "not measured" in checks[3]["value"] and "bias-breaking" in checks[3]["value"]
    assert [c["holds"] for c in checks[:3]] == [True] * 3


def test_markdown_report_and_summary(capsys):
    res = results(adversarial_fp=0.099)
    checks = hallucination_checks(res)
    md = markdown_report(res, checks, {"model": "m"})
    assert "- model: m" in md and "| random | 90.0 | 50.0 | 50.0 | 50.0 | 50.0 | 5.0 | [89.0, 91.0] |" in md
    assert md.count("| yes |") == 3 and md.count("| NO |") == 1
    print_summary(res, checks)
    out = capsys.readouterr().out
    assert "adversarial" in out and "breaking" in out and "NO" in out


# ---------------------------------------------------------------------------- the other kinds
def qa(conforming: float, breaking: float, prior_share: float = 0.5) -> dict:
    """A world-qa result whose yes/no accuracy is `conforming` on conforming items, `breaking` on
    bias-breaking ones (100 of each)."""
    def sub(acc):
        return {"accuracy": acc, "ci95": {"accuracy": [acc - 0.01, acc + 0.01]}, "n": 100}

    overall = (conforming + breaking) / 2
    yes_no = sub(overall) | {"subsets": {"conforming": sub(conforming), "breaking": sub(breaking)},
                             "prior_share": prior_share}
    yes_no["breaking_error_ratio"] = (1 - breaking) / (1 - conforming) if conforming < 1 else None
    return {"metrics": {"yes_no": yes_no, "accuracy": overall}}


def with_kinds(relation=(0.90, 0.70), count=(0.95, 0.85), attribute=(0.95, 0.80), repeats=0.02, relation_false=0.1,
               claims_n=50):
    res = results()
    for kind, (c, b) in (("existence", (0.9, 0.9)), ("relation", relation), ("count", count),
                         ("attribute", attribute)):
        res[f"world-qa:{kind}"] = qa(c, b)
    claims = {k: {"value": v, "ci95": [v, v], "n": claims_n} for k, v in
              (("object", 0.05), ("attribute", 0.1), ("count", 0.1), ("relation", relation_false), ("all", 0.1))}
    res["world-chair"]["metrics"] |= {"claims": claims, "repeats_phrase": {"value": repeats, "ci95": [repeats] * 2}}
    return res


KIND_CHECKS = ["relation yes/no accuracy on bias-conforming items >= 80 %", "count yes/no accuracy >= 85 %",
               "colour yes/no errors on bias-breaking items >= 2x conforming items",
               "count yes/no errors on bias-breaking items >= 2x conforming items",
               "relation yes/no errors on bias-breaking items >= 2x conforming items",
               "captions naming a class in two phrases <= 5 %", "false relation claims in captions <= 25 %"]


def test_the_kind_checks_follow_the_four_and_each_meets_and_misses():
    checks = hallucination_checks(with_kinds())
    assert [c["check"] for c in checks[4:]] == KIND_CHECKS and all(c["holds"] for c in checks)
    # relation conforming 0.80 just meets, 0.79 misses; count overall (0.85 + 0.85) / 2 = 0.85 meets
    assert holds(with_kinds(relation=(0.80, 0.60)))[4] and not holds(with_kinds(relation=(0.79, 0.58)))[4]
    assert holds(with_kinds(count=(0.90, 0.80)))[5] and not holds(with_kinds(count=(0.90, 0.79)))[5]
    # error ratio: conforming 10 % wrong; breaking 20 % wrong is 2x (meets), 19 % misses
    assert holds(with_kinds(attribute=(0.90, 0.80)))[6] and not holds(with_kinds(attribute=(0.90, 0.81)))[6]
    assert not holds(with_kinds(count=(0.95, 0.95)))[7] and not holds(with_kinds(relation=(0.9, 0.85)))[8]
    assert holds(with_kinds(repeats=0.05))[9] and not holds(with_kinds(repeats=0.051))[9]
    assert holds(with_kinds(relation_false=0.25))[10] and not holds(with_kinds(relation_false=0.26))[10]
    # captions that name nothing (a model answering "no" to every prompt): 0 % repeats and 0 % false relations
    # of 0 claims are not measured, not met
    empty = hallucination_checks(with_kinds(repeats=0.0, relation_false=0.0, claims_n=0))
    assert [(c["holds"], c["value"].split(":")[0]) for c in empty[9:]] == [(False, "not measured")] * 2


def test_the_kind_profile_has_one_row_per_kind_in_every_writer(capsys):
    from halluscope.report import kind_profile, kind_rows

    res = with_kinds()
    profile = kind_profile(res)
    assert [r["kind"] for r in profile] == ["object", "attribute", "count", "relation"]
    relation = profile[3]
    assert relation["claims_false"]["value"] == 0.1 and relation["conforming"]["value"] == 0.9
    assert relation["breaking_error_ratio"] == pytest.approx(3.0)
    assert kind_rows(profile)[3][:2] == ["relation", "10.0 [10.0, 10.0]"]
    md = markdown_report(res, hallucination_checks(res), {"model": "m"})
    assert "## Each kind of hallucination" in md and "| relation | 10.0 [10.0, 10.0] | 80.0 [79.0, 81.0] |" in md
    print_summary(res, hallucination_checks(res))
    assert "Each kind of hallucination" in capsys.readouterr().out
    # without world-qa or claims there is no profile, and the four checks stand alone
    assert kind_profile(results()) == [] and len(hallucination_checks(results())) == 4
