"""The metrics reproduce published figures from the real benchmark files in tests/data (sources and
licences in tests/data/README.md) and POPE's question files that ship with the package. The tests
of NLTK parity mode take the `nltk_data` fixture (conftest.py): they skip where NLTK's data is not
found."""

import hashlib
import json
import random
from pathlib import Path

import pytest

from halluscope import metrics
from halluscope.tasks.real import POPE_FILES

DATA = Path(__file__).with_name("data")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- CHAIR: OPERA's LLaVA-1.5 captions, figures published by OPERA (CHAIR_s / CHAIR_i, %) ---------------

PUBLISHED_CHAIR = {"greedy": (45.0, 12.7), "beam5": (48.8, 13.9), "ours": (44.6, 12.8)}
# The built-in no-data mode on the same captions, as measured and documented in docs/metrics.md.
BUILTIN_CHAIR = {"greedy": (45.0, 12.7), "beam5": (48.8, 13.9), "ours": (44.8, 12.7)}


@pytest.fixture(scope="module")
def chair_gt():
    return metrics.load_gt_objects(DATA / "chair/gt_objects_pattern.json")


def _captions(run: str) -> list[dict]:
    captions = _jsonl(DATA / f"chair/captions/llava-1.5_{run}.jsonl")
    assert len(captions) == 500
    return captions


@pytest.mark.parametrize("run", sorted(PUBLISHED_CHAIR))
def test_chair_reproduces_published_figures(run, chair_gt, nltk_data):
    captions = _captions(run)
    m = metrics.chair(captions, chair_gt)  # parity=True: NLTK, as OPERA's chair.py
    assert m["backend"] == "nltk" and m["n"] == 500
    assert (round(100 * m["chair_s"], 1), round(100 * m["chair_i"], 1)) == PUBLISHED_CHAIR[run]
    # order never matters
    shuffled = captions[::-1]
    assert metrics.chair(shuffled, chair_gt)["chair_i"] == m["chair_i"]

    # the built-in mode stays this close to NLTK's on real captions (docs/metrics.md)
    b = metrics.chair(captions, chair_gt, parity=False)
    assert abs(b["chair_i"] - m["chair_i"]) < 0.002 and abs(b["chair_s"] - m["chair_s"]) < 0.005
    assert abs(b["recall"] - m["recall"]) < 0.005 and abs(b["mean_length"] - m["mean_length"]) < 0.1


@pytest.mark.parametrize("run", sorted(BUILTIN_CHAIR))
def test_chair_builtin_mode_reproduces_its_documented_figures(run, chair_gt):
    # needs no NLTK data, so it runs on every clone
    captions = _captions(run)
    b = metrics.chair(captions, chair_gt, parity=False)
    assert b["backend"] == "builtin" and b["n"] == 500
    assert (round(100 * b["chair_s"], 1), round(100 * b["chair_i"], 1)) == BUILTIN_CHAIR[run]
    assert metrics.chair(captions[::-1], chair_gt, parity=False)["chair_i"] == b["chair_i"]


def test_chair_greedy_details(chair_gt, nltk_data):
    captions = _captions("greedy")
    m = metrics.chair(captions, chair_gt)
    first = m["per_sample"][0]  # image 226988: "a woman sitting at a dining table ... a bench ... two bottles"
    assert first["image_id"] == 226988
    assert first["mentioned"][:3] == ["person", "dining table", "pizza"]
    assert set(first["hallucinated"]) <= set(first["mentioned"]) and "person" not in first["hallucinated"]
    assert m["recall"] == pytest.approx(0.8038, abs=5e-4)
    assert m["mean_length"] == pytest.approx(96.872)


# --- MME: the eval tool's LaVIN example answers (official subtask scores of LaVIN) ---------------------

# score, acc, acc_plus of LaVIN's example answer files, as MME's calculation.py prints them
MME_LAVIN = {"existence": (185.0, 0.95, 0.90), "count": (88.33, 37 / 60, 8 / 30),
             "position": (63.33, 32 / 60, 3 / 30), "color": (75.0, 35 / 60, 5 / 30)}


@pytest.mark.parametrize("subtask", metrics.MME_HALLUCINATION_SUBTASKS)
def test_mme_reproduces_official_scores(subtask):
    rows = metrics.load_mme_results(DATA / f"mme/{subtask}.txt")
    assert len(rows) == 60
    m = metrics.mme(rows)
    score, acc, acc_plus = MME_LAVIN[subtask]
    assert round(m["score"], 2) == score
    assert m["acc"] == pytest.approx(acc) and m["acc_plus"] == pytest.approx(acc_plus)
    assert m["n_images"] == 30
    random.Random(0).shuffle(rows)
    assert metrics.mme(rows) == m


def test_mme_hallucination_total():
    total = sum(metrics.mme(metrics.load_mme_results(DATA / f"mme/{t}.txt"))["score"]
                for t in metrics.MME_HALLUCINATION_SUBTASKS)
    assert round(total, 2) == 411.67  # 185 + 88.33 + 63.33 + 75


# --- POPE: answers matched to labels by question_id ---------------------------------------------------

# POPE's COCO question files as RUCAIBox/POPE@3df3ba1 output/coco/ publishes them; the package ships
# them (tasks/data/pope/) and the tests below read those very copies.
POPE_SHA256 = {
    "random": "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994",
    "popular": "72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753",
    "adversarial": "420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8",
}
# The first published random split (2,910 questions), still used by LLaVA-1.5 and OPERA.
LEGACY_POPE = DATA / "pope/legacy_2910/coco_pope_random.json"


def test_packaged_pope_files_are_the_published_ones():
    assert sorted(POPE_FILES) == sorted(POPE_SHA256)
    for split, path in POPE_FILES.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == POPE_SHA256[split], path


def _answers(questions: list[dict]) -> dict:
    """Deterministic free-text answers: right except every 7th question (wrong) and every 11th (a
    'Yes.'-prefixed hedge that the official parser reads as yes)."""
    out = {}
    for q in questions:
        i, label = q["question_id"], q["label"]
        right = "Yes, there is." if label == "yes" else "No, there is not."
        wrong = "No, there is not." if label == "yes" else "Yes, there is."
        out[i] = "Yes. Not sure though." if i % 11 == 0 else wrong if i % 7 == 0 else right
    return out


def _expected(questions: list[dict], answers: dict) -> tuple[int, int, int, int]:
    tp = fp = tn = fn = 0
    for q in questions:
        pred = "yes" if answers[q["question_id"]].startswith("Yes") else "no"
        tp += pred == "yes" and q["label"] == "yes"
        fp += pred == "yes" and q["label"] == "no"
        tn += pred == "no" and q["label"] == "no"
        fn += pred == "no" and q["label"] == "yes"
    return tp, fp, tn, fn


@pytest.mark.parametrize("split", ["legacy_2910", "random"])
def test_pope_real_files_align_answers_by_id(split, tmp_path):
    questions = metrics.load_pope_questions(LEGACY_POPE if split == "legacy_2910" else POPE_FILES[split])
    labels = metrics.pope_labels(questions)
    answers = _answers(questions)
    # an answers file in LLaVA's format, written in shuffled order
    rows = [{"question_id": k, "prompt": "", "text": v} for k, v in answers.items()]
    random.Random(1).shuffle(rows)
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = metrics.load_pope_answers(f)
    assert list(loaded) != sorted(loaded)  # really out of order
    m = metrics.pope(loaded, labels)
    tp, fp, tn, fn = _expected(questions, answers)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert m["n"] == len(questions) == (2910 if "legacy" in split else 3000)
    assert m["accuracy"] == pytest.approx((tp + tn) / m["n"])
    assert m["yes_ratio"] == pytest.approx((tp + fp) / m["n"])
    assert 0.8 < m["accuracy"] < 0.95
    # the same answers paired by file position give other, wrong, numbers
    positional = metrics.pope([r["text"] for r in rows], [q["label"] for q in questions])
    assert positional["accuracy"] < 0.6


def test_pope_answers_for_the_current_file_do_not_fit_the_legacy_labels():
    current = metrics.load_pope_questions(POPE_FILES["random"])
    legacy = metrics.load_pope_questions(LEGACY_POPE)
    with pytest.raises(ValueError, match=r"without a label for 90 \['2911', '2912'"):
        metrics.pope(_answers(current), metrics.pope_labels(legacy))


def test_pope_mean_f1_over_the_three_splits():
    results = {}
    for split in ("random", "popular", "adversarial"):
        questions = metrics.load_pope_questions(POPE_FILES[split])
        results[split] = metrics.pope(_answers(questions), metrics.pope_labels(questions))
    f1 = [r["f1"] for r in results.values()]
    assert all(0.8 < x < 0.95 for x in f1)
    assert metrics.pope_mean_f1(results) == pytest.approx(sum(f1) / 3)


# --- AMBER: the real annotations ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def amber_annotations():
    return metrics.load_amber_annotations(DATA / "amber/annotations.json")


@pytest.mark.parametrize("parity", [True, False])
def test_amber_real_annotations_generative(amber_annotations, parity, request):
    if parity:
        request.getfixturevalue("nltk_data")
    # image 1: truth sky, forest, grass, person, lake, mountain, road; likely hallucinations cloud, sun,
    # bird, dog, flower. Nouns that are AMBER words: person, lake, mountain, dog, grass.
    response = "A person stands by a lake below a mountain, and a dog runs on the grass."
    m = metrics.amber([{"id": 1, "response": response}], amber_annotations, parity=parity)
    assert m["chair"] == pytest.approx(1 / 5)  # dog
    assert m["cover"] == pytest.approx(4 / 7)
    assert m["hal"] == 1.0
    assert m["cog"] == pytest.approx(1 / 5)


def test_amber_real_annotations_discriminative(amber_annotations, monkeypatch):
    monkeypatch.setenv("HALLUSCOPE_AMBER_ANNOTATIONS", str(DATA / "amber/annotations.json"))
    disc = [a for a in amber_annotations if a["type"] != "generative"]
    assert len(disc) == 14216
    perfect = [{"id": a["id"], "response": "Yes" if a["truth"] == "yes" else "No"} for a in disc]
    m = metrics.amber(perfect)  # annotations from the environment variable
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == 1.0
    assert (m["existence"]["n"], m["attribute"]["n"], m["relation"]["n"]) == (4924, 4764 + 2072 + 792, 975 + 689)
    always_yes = metrics.amber([{"id": a["id"], "response": "Yes"} for a in disc])
    n_yes = sum(a["truth"] == "yes" for a in disc)
    assert always_yes["accuracy"] == pytest.approx(n_yes / len(disc))
    assert always_yes["recall"] == 0.0 and always_yes["f1"] == 0.0
