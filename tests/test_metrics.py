import pytest

from halluscope import metrics
from halluscope.benchmarks.world import world_vocabulary


def test_pope_hand_computed():
    # labels: 4 yes, 4 no; predictions: TP=3, FN=1, FP=2, TN=2
    labels = ["yes", "yes", "yes", "yes", "no", "no", "no", "no"]
    preds = ["yes", "yes", "yes", "no", "yes", "yes", "no", "no"]
    m = metrics.pope(preds, labels)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert m["yes_ratio"] == pytest.approx(5 / 8)  # share of 'yes' predictions, not labels
    assert m["false_positive_rate"] == pytest.approx(2 / 4)
    for k in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        assert 0 <= m[k] <= 1


def test_pope_edge_cases():
    m = metrics.pope(["no", "no"], ["yes", "no"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["yes_ratio"] == 0.0
    with pytest.raises(ValueError, match="align them by question_id"):
        metrics.pope(["yes"], ["yes", "no"])
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        metrics.pope(["yes"], ["Yes"])


def test_pope_order_invariant():
    labels = ["yes", "no", "no", "yes", "no"]
    preds = ["yes", "yes", "no", "no", "no"]
    m = metrics.pope(preds, labels)
    perm = [4, 2, 0, 3, 1]
    assert metrics.pope([preds[i] for i in perm], [labels[i] for i in perm]) == m


@pytest.mark.parametrize(
    "text,expected",
    [("Yes, there is a dog.", "yes"), ("No, there is no dog.", "no"), ("There is not a dog", "no"),
     ("Yes. No dogs were harmed.", "yes"), ("no", "no"), ("NO", "yes"), ("Nope", "yes"), ("No.", "no"),
     ("I think no", "no"), ("no,", "no")],
)
def test_official_pope_parser(text, expected):
    assert metrics.parse_yes_no(text) == expected


def test_pope_parses_free_text_predictions():
    assert metrics.pope(["Yes, there is.", "No."], ["yes", "no"])["accuracy"] == 1.0


def test_chair_hand_computed():
    vocab = world_vocabulary()
    captions = [
        "the image shows a red fork and a blue knife. the fork is left of the knife.",  # knife hallucinated x2
        "the image shows two cups.",  # all correct
        "the image shows a dog.",  # dog hallucinated; ball missed
    ]
    gt = [["fork"], ["cup", "plate"], ["ball"]]
    m = metrics.chair(captions, gt, vocab)
    # mentions: fork, knife, fork, knife | cup | dog = 6; hallucinated: knife, knife, dog = 3
    assert m["chair_i"] == pytest.approx(3 / 6)
    assert m["chair_s"] == pytest.approx(2 / 3)
    # recall: fork (1/1) + cup (1/2) + none (0/1) = 2 of 4 ground-truth objects
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["per_sample"][1] == {"mentioned": ["cup"], "hallucinated": []}
    assert m["mean_length"] == pytest.approx((17 + 5 + 5) / 3)


def test_chair_counts_plurals_and_ignores_substrings():
    vocab = world_vocabulary()
    m = metrics.chair(["three knives and some forks; a penguin"], [["knife"]], vocab)
    assert m["per_sample"][0]["mentioned"] == ["knife", "fork"]  # 'penguin' is not 'pen'


def test_bootstrap_ci_brackets_the_statistic():
    items = [1] * 70 + [0] * 30
    lo, hi = metrics.bootstrap_ci(items, lambda xs: sum(xs) / len(xs), n_boot=500)
    assert lo < 0.7 < hi and hi - lo < 0.25
    assert metrics.bootstrap_ci(items, lambda xs: sum(xs) / len(xs), n_boot=500) == (lo, hi)  # seeded
