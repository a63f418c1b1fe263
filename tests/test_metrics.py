"""Hand-computed cases for every metric formula and parser variant."""

import json

import numpy as np
import pytest

from halluscope import metrics
from halluscope.benchmarks.world import world_vocabulary

# Tests of NLTK parity mode take the `nltk_data` fixture (conftest.py), which skips them where NLTK's
# data is not found.


# --- POPE -------------------------------------------------------------------------------------------

def test_pope_hand_computed():
    # labels: 4 yes, 4 no; predictions: TP=3, FN=1, FP=2, TN=2
    labels = ["yes", "yes", "yes", "yes", "no", "no", "no", "no"]
    preds = ["yes", "yes", "yes", "no", "yes", "yes", "no", "no"]
    m = metrics.pope(preds, labels)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert m["yes_ratio"] == pytest.approx(5 / 8)  # share of 'yes' predictions, not labels (4/8)
    assert m["false_positive_rate"] == pytest.approx(2 / 4)
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n_other"], m["n"]) == (3, 2, 2, 1, 0, 8)
    assert m["parser"] == "official"


def test_pope_edge_cases():
    m = metrics.pope(["no", "no"], ["yes", "no"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["yes_ratio"] == 0.0
    with pytest.raises(ValueError, match="align them by question_id"):
        metrics.pope(["yes"], ["yes", "no"])
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        metrics.pope(["yes"], ["Yes"])
    with pytest.raises(ValueError, match="unknown POPE parser 'llava'"):
        metrics.pope(["yes"], ["yes"], parser="llava")
    with pytest.raises(ValueError, match="both as dicts"):
        metrics.pope({1: "yes"}, ["yes"])


def test_pope_order_invariant():
    labels = ["yes", "no", "no", "yes", "no"]
    preds = ["yes", "yes", "no", "no", "no"]
    m = metrics.pope(preds, labels)
    perm = [4, 2, 0, 3, 1]
    assert metrics.pope([preds[i] for i in perm], [labels[i] for i in perm]) == m


def test_pope_dicts_are_matched_by_id_not_position():
    labels = {1: "yes", 2: "no", 3: "no"}
    preds = {3: "Yes, there is.", 1: "Yes.", 2: "No, there is not."}  # out of order: q3 is a false positive
    m = metrics.pope(preds, labels)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 1, 0)
    # the same answers paired by position would be (yes,yes) (yes,no) (no,no): another confusion matrix
    assert metrics.pope(list(preds.values()), list(labels.values()))["tp"] == 1
    assert metrics.pope({"1": "yes", "2": "no", "3": "no"}, labels)["accuracy"] == 1.0  # '1' matches 1
    with pytest.raises(ValueError, match=r"missing predictions for 1 \['2'\].*without a label for 1 \['7'\]"):
        metrics.pope({1: "yes", 3: "no", 7: "no"}, labels)


@pytest.mark.parametrize(
    "text,expected",
    [("Yes, there is a dog.", "yes"), ("No, there is no dog.", "no"), ("There is not a dog", "no"),
     ("Yes. No dogs were harmed.", "yes"), ("no", "no"), ("NO", "yes"), ("Nope", "yes"), ("No.", "no"),
     ("I think no", "no"), ("no,", "no"), ("There isn't a dog.", "yes")],
)
def test_official_pope_parser(text, expected):
    assert metrics.parse_yes_no(text) == expected
    assert metrics.parse_yes_no(text, "official") == expected


@pytest.mark.parametrize(
    "text,official,opera,lmms_eval",
    [
        ("Yes. No dogs were harmed.", "yes", "no", "other"),  # OPERA reads past the first sentence
        ("There isn't a dog.", "yes", "no", "other"),  # OPERA: words ending in n't
        ("NO", "yes", "no", "no"),  # official: only 'No', 'not', 'no'
        ("Yes", "yes", "yes", "yes"),
        ("no\n", "yes", "yes", "no"),  # official/OPERA split on ' ' only: 'no\n' is not 'no'
        ("NO.", "yes", "no", "other"),
        ("No, it is not.", "no", "no", "other"),
        ("yes.", "yes", "yes", "other"),  # lmms-eval is strict
    ],
)
def test_pope_parser_variants(text, official, opera, lmms_eval):
    assert [metrics.parse_yes_no(text, p) for p in ("official", "opera", "lmms_eval")] == [official, opera, lmms_eval]


def test_pope_lmms_eval_other_answers():
    # lmms-eval: an answer that is neither yes nor no is wrong for accuracy and left out of precision
    # and recall (its false negatives count only 'no' answers).
    labels = ["yes", "yes", "no", "no"]
    preds = ["Yes", "maybe", "no", "yes"]
    m = metrics.pope(preds, labels, parser="lmms_eval")
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n_other"]) == (1, 1, 1, 0, 1)
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(2 / 4)
    assert m["parser"] == "lmms_eval"
    # the official parser reads 'maybe' as yes: a true positive, not an 'other'
    assert metrics.pope(preds, labels)["tp"] == 2


def test_pope_mean_f1():
    a = metrics.pope(["yes", "no"], ["yes", "no"])  # f1 1
    b = metrics.pope(["yes", "yes"], ["yes", "no"])  # p 1/2, r 1: f1 2/3
    assert metrics.pope_mean_f1({"random": a, "adversarial": b}) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.pope_mean_f1([a, b]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        metrics.pope_mean_f1([])


def test_pope_question_and_answer_files(tmp_path):
    q = tmp_path / "q.json"
    q.write_bytes(b'{"question_id": 2, "imange": "b.jpg", "text": "Is there a cat in the imange?", "label": "no"}\r\n'
                  b'{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}\r\n\r\n')
    questions = metrics.load_pope_questions(q)
    assert [r["image"] for r in questions] == ["b.jpg", "a.jpg"]
    assert metrics.pope_labels(questions) == {2: "no", 1: "yes"}
    llava = tmp_path / "llava.jsonl"  # LLaVA's answers: the answer under 'text'
    llava.write_text('{"question_id": 1, "prompt": "Is there a dog?", "text": "Yes, there is."}\n'
                     '{"question_id": 2, "prompt": "Is there a cat?", "text": "No."}\n')
    assert metrics.load_pope_answers(llava) == {1: "Yes, there is.", 2: "No."}
    pope_fmt = tmp_path / "pope.jsonl"  # POPE's own answers: no ids, only positions
    pope_fmt.write_text('{"question": "is there a dog?", "answer": "yes"}\n{"question": "x", "answer": "no"}\n')
    assert metrics.load_pope_answers(pope_fmt) == ["yes", "no"]
    with pytest.raises(ValueError, match="no answer field"):
        metrics.load_pope_answers(pope_fmt, key="response")


# --- CHAIR ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("parity", [True, False])
def test_chair_rules_hand_computed(parity, request):
    if parity:
        request.getfixturevalue("nltk_data")
    captions = [
        # 'toilet seat' is the toilet; 'seat' alone with a toilet in the caption is dropped (no chair)
        {"image_id": 1, "caption": "A toilet seat is up. The seat of the toilet is white."},
        # 'baby elephant' is an elephant, not a person; 'two dogs' are counted as dog; 'hot dog' is one object
        {"image_id": 2, "caption": "A baby elephant next to two dogs eating a hot dog."},
        # 'passenger jet' is the jet (airplane), 'wine glasses' -> 'wine glass', 'knives' -> knife
        {"image_id": 3, "caption": "A passenger jet, wine glasses and knives on a dining table."},
    ]
    gt = {1: ["toilet"], 2: ["elephant", "hot dog", "person"], 3: ["airplane", "knife"]}
    m = metrics.chair(captions, gt, parity=parity)
    assert [s["mentioned"] for s in m["per_sample"]] == [
        ["toilet", "toilet"],
        ["elephant", "dog", "hot dog"],
        ["airplane", "wine glass", "knife", "dining table"],
    ]
    # hallucinated: dog (image 2); wine glass and dining table (image 3)
    assert [s["hallucinated"] for s in m["per_sample"]] == [[], ["dog"], ["wine glass", "dining table"]]
    assert m["chair_i"] == pytest.approx(3 / 9)
    assert m["chair_s"] == pytest.approx(2 / 3)
    # recall: toilet 1/1, elephant + hot dog 2/3 (person missed), airplane + knife 2/2 -> 5 of 6
    assert m["recall"] == pytest.approx(5 / 6)
    assert m["backend"] == ("nltk" if parity else "builtin")
    assert m["per_sample"][2]["words"] == ["jet", "wine glass", "knife", "table"]


def test_chair_mean_length_counts_tokens_after_merging_pairs(nltk_data):
    # word_tokenize: A | teddy bear (one, merged) | on | a | bed | . -> 6 tokens; 7 tokens for the second
    m = metrics.chair([{"image_id": 1, "caption": "A teddy bear on a bed."},
                       {"image_id": 1, "caption": "Two cats, one dog."}], {1: ["bed", "teddy bear"]})
    assert [s["length"] for s in m["per_sample"]] == [6, 6]
    assert m["mean_length"] == pytest.approx(6)


def test_chair_ids_match_as_strings_and_missing_ids_fail():
    caps = [{"image_id": 42, "caption": "a dog"}]
    assert metrics.chair(caps, {"42": ["dog"]}, parity=False)["chair_i"] == 0.0
    with pytest.raises(ValueError, match=r"no ground-truth objects for 1 image ids: \['42'\]"):
        metrics.chair(caps, {"7": ["dog"]}, parity=False)


def test_chair_custom_synonyms(tmp_path):
    caps = [{"image_id": 1, "caption": "A red ball near two blue boxes and a toy car."}]
    lines = [["ball", "sphere"], ["box", "crate"], ["toy car", "model car"]]
    m = metrics.chair(caps, {1: ["box"]}, synonyms=lines, parity=False)
    # the list's own two-word entries are phrases: 'toy car' is one object, not 'car'
    assert m["per_sample"][0]["mentioned"] == ["ball", "box", "toy car"]
    assert m["chair_i"] == pytest.approx(2 / 3)
    f = tmp_path / "syn.txt"
    f.write_text("ball, sphere\nbox, crate\ntoy car, model car\n")
    assert metrics.chair(caps, {1: ["box"]}, synonyms=f, parity=False) == m
    as_map = {"ball": "ball", "sphere": "ball", "box": "box", "crate": "box", "toy car": "toy car"}
    assert metrics.chair(caps, {1: ["box"]}, synonyms=as_map, parity=False)["chair_i"] == pytest.approx(2 / 3)


def test_packaged_coco_synonyms_keep_their_quirks():
    lines = metrics.coco_synonyms()
    assert len(lines) == 80 and lines[0][0] == "person" and lines[-1] == ["toothbrush"]
    assert " motor bike" in lines[3]  # a doubled space in the original file: never matches
    # hence 'motor bike' is merged as a pair but is no COCO word, while 'motorbike' is a motorcycle
    assert metrics.caption_objects("a motor bike and a motorbike", parity=False) == ["motorcycle"]


def test_chair_parity_needs_nltk_data_and_says_how_to_get_it(tmp_path, monkeypatch):
    nltk = pytest.importorskip("nltk")
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(LookupError, match=r"python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng "
                                          r"wordnet.*parity=False"):
        metrics.chair([{"image_id": 1, "caption": "a dog"}], {1: ["dog"]})
    # parity=False needs no data at all
    assert metrics.chair([{"image_id": 1, "caption": "two dogs"}], {1: ["dog"]}, parity=False)["chair_i"] == 0.0


def test_coco_gt_objects_from_annotation_files(tmp_path, nltk_data):
    pytest.importorskip("pycocotools")
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}]
    images = [{"id": 10, "file_name": "a.jpg"}, {"id": 11, "file_name": "b.jpg"}]
    instances = {"images": images, "categories": cats, "annotations": [
        {"id": 1, "image_id": 10, "category_id": 18, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0},
        {"id": 2, "image_id": 11, "category_id": 62, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0}]}
    captions = {"images": images, "annotations": [
        {"id": 3, "image_id": 10, "caption": "A woman walking two puppies."},
        {"id": 4, "image_id": 11, "caption": "An empty chair by a toilet seat."}]}
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    gt = metrics.coco_gt_objects(tmp_path / "instances.json", [tmp_path / "captions.json"])
    assert gt == {"10": ["dog", "person"], "11": ["chair", "toilet"]}
    assert metrics.coco_gt_objects(tmp_path / "instances.json", tmp_path / "captions.json",
                                   image_ids=[11]) == {"11": ["chair", "toilet"]}


def test_load_gt_objects(tmp_path):
    f = tmp_path / "gt.json"
    f.write_text('{"757": ["elephant"], "1029": ["airplane", "person"]}')
    assert metrics.load_gt_objects(f) == {"757": ["elephant"], "1029": ["airplane", "person"]}


def test_chair_vocabulary_hand_computed():
    vocab = world_vocabulary()
    captions = [
        "the image shows a red fork and a blue knife. the fork is left of the knife.",  # knife hallucinated x2
        "the image shows two cups.",  # all correct
        "the image shows a dog.",  # dog hallucinated; ball missed
    ]
    gt = [["fork"], ["cup", "plate"], ["ball"]]
    m = metrics.chair_vocabulary(captions, gt, vocab)
    # mentions: fork, knife, fork, knife | cup | dog = 6; hallucinated: knife, knife, dog = 3
    assert m["chair_i"] == pytest.approx(3 / 6)
    assert m["chair_s"] == pytest.approx(2 / 3)
    # recall: fork (1/1) + cup (1/2) + none (0/1) = 2 of 4 ground-truth objects
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["per_sample"][1] == {"mentioned": ["cup"], "hallucinated": []}
    assert m["mean_length"] == pytest.approx((17 + 5 + 5) / 3)


def test_chair_vocabulary_counts_plurals_and_ignores_substrings():
    vocab = world_vocabulary()
    m = metrics.chair_vocabulary(["three knives and some forks; a penguin"], [["knife"]], vocab)
    assert m["per_sample"][0]["mentioned"] == ["knife", "fork"]  # 'penguin' is not 'pen'


# --- AMBER ------------------------------------------------------------------------------------------

RELATION = {"dog": ["puppy"], "cat": ["kitten"], "grass": ["lawn"], "tree": [], "car": [], "sky": []}
ANNOTATIONS = [
    {"id": 1, "type": "generative", "truth": ["dog", "grass", "dog"], "hallu": ["cat", "car"]},
    {"id": 2, "type": "generative", "truth": ["tree", "sky"], "hallu": ["dog"]},
    {"id": 3, "type": "discriminative-hallucination", "truth": "no"},
    {"id": 4, "type": "discriminative-hallucination", "truth": "yes"},
    {"id": 5, "type": "discriminative-attribute-state", "truth": "no"},
    {"id": 6, "type": "discriminative-attribute-number", "truth": "yes"},
    {"id": 7, "type": "discriminative-relation", "truth": "no"},
    {"id": 8, "type": "relation", "truth": "no"},
]


@pytest.mark.parametrize("parity", [True, False])
def test_amber_generative_hand_computed(parity, request):
    if parity:
        request.getfixturevalue("nltk_data")
    responses = [
        # nouns in AMBER's words: puppies -> puppy (dog), lawn (grass), kitten (cat), car; 'sky' is no object here
        {"id": 1, "response": "Two puppies play on the lawn next to a kitten and a car."},
        # tree (truth); nothing hallucinated; 'sky' is covered too
        {"id": 2, "response": "A tall tree under a blue sky."},
    ]
    m = metrics.amber(responses, ANNOTATIONS, relation=RELATION, safe_words=["car"], parity=parity)
    # id 1: mentions puppy, lawn, kitten, car = 4; car is a safe word (not hallucinated, still counted);
    #       kitten hallucinated -> 1. id 2: tree, sky = 2 mentions, 0 hallucinated. CHAIR = 1/6.
    assert m["chair"] == pytest.approx(1 / 6)
    # cover: id 1 covers dog (first of the two 'dog' entries only) and grass: 2 of 3; id 2: 2 of 2 -> 4/5
    assert m["cover"] == pytest.approx(4 / 5)
    assert m["hal"] == pytest.approx(1 / 2)  # one response of two has a hallucination
    # cog: id 1's likely hallucinations cat (mentioned as kitten) and car (a safe word, skipped): 1 of 2;
    #      id 2's dog: 0 of 1 -> 1/3
    assert m["cog"] == pytest.approx(1 / 3)
    assert m["n_generative"] == 2 and m["f1"] is None and m["amber_score"] is None


def test_amber_discriminative_hand_computed():
    responses = [{"id": 3, "response": "No"}, {"id": 4, "response": "No"}, {"id": 5, "response": "Yes"},
                 {"id": 6, "response": "Yes"}, {"id": 7, "response": "No"}, {"id": 8, "response": "no"}]
    m = metrics.amber(responses, ANNOTATIONS, relation=RELATION)
    # official parser: exactly 'Yes'/'No' ('no' is neither). 'No' is the positive class.
    # truth:  no  yes no  yes no  no ; answer: no  no  yes yes no  other
    # correct: 3, 6, 7 -> 3/6; answered No: 3, 4, 7 -> precision 2/3; truth No: 3, 5, 7, 8 -> recall 2/4
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert m["existence"]["accuracy"] == pytest.approx(1 / 2) and m["existence"]["n"] == 2
    assert m["attribute"]["n"] == 2 and m["state"]["n"] == 1 and m["number"]["accuracy"] == 1.0
    assert m["action"] is None
    assert m["relation"]["n"] == 2 and m["relation"]["recall"] == pytest.approx(1 / 2)  # both relation types
    assert m["chair"] is None and m["amber_score"] is None
    # the POPE parser reads 'no' as no
    assert metrics.amber(responses, ANNOTATIONS, relation=RELATION, parser="pope")["accuracy"] == pytest.approx(4 / 6)


def test_amber_score_and_similarity():
    responses = [{"id": 2, "response": "A tall tree and a doggy."}, {"id": 3, "response": "No"},
                 {"id": 4, "response": "Yes"}]
    relation = RELATION | {"dog": ["puppy", "doggy"]}
    m = metrics.amber(responses, ANNOTATIONS, relation=relation, parity=False)
    # 'doggy' is a near-synonym of id 2's likely hallucination 'dog': mentioned and hallucinated
    assert m["chair"] == pytest.approx(1 / 2) and m["cog"] == 1.0
    assert m["f1"] == 1.0
    assert m["amber_score"] == pytest.approx((1 - 1 / 2 + 1) / 2)
    # a similarity that calls 'doggy' a 'tree' makes it a truth object: no hallucination
    similar = {("doggy", "tree"): 0.9}
    m2 = metrics.amber(responses, ANNOTATIONS, relation=relation, parity=False,
                       similarity=lambda a, b: similar.get((a, b), 1.0 if a == b else 0.0))
    assert m2["chair"] == 0.0 and m2["amber_score"] == pytest.approx(1.0) and m2["similarity"] == "<lambda>"


def test_amber_errors(monkeypatch):
    monkeypatch.delenv("HALLUSCOPE_AMBER_ANNOTATIONS", raising=False)
    with pytest.raises(FileNotFoundError, match="HALLUSCOPE_AMBER_ANNOTATIONS"):
        metrics.amber([{"id": 1, "response": "x"}])
    with pytest.raises(ValueError, match="not in the annotations"):
        metrics.amber([{"id": 99, "response": "x"}], ANNOTATIONS, relation=RELATION)
    with pytest.raises(ValueError, match="unknown AMBER parser"):
        metrics.amber([{"id": 3, "response": "x"}], ANNOTATIONS, parser="nope")


# --- MME --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "response,expected",
    [("Yes", "yes"), ("no", "no"), ("Yes, there is.", "yes"), ("No, there is not.", "no"), ("not sure", "no"),
     ("There is a dog.", "other"), (" yes", "yes"), ("I think yes", "other"), ("nope", "no")],
)
def test_mme_parser(response, expected):
    assert metrics.parse_mme_answer(response) == expected


def test_mme_hand_computed():
    rows = [
        {"image": "a.jpg", "question": "q1", "answer": "Yes", "response": "Yes"},
        {"image": "b.jpg", "question": "q3", "answer": "Yes", "response": "No"},
        {"image": "a.jpg", "question": "q2", "answer": "No", "response": "No, there is not."},
        {"image": "c.jpg", "question": "q5", "answer": "Yes", "response": "There is one."},  # other: wrong
        {"image": "b.jpg", "question": "q4", "answer": "No", "response": "no"},
        {"image": "c.jpg", "question": "q6", "answer": "No", "response": "No"},
    ]
    m = metrics.mme(rows)
    # right: a, a, b(q4), c(q6) = 4 of 6; both right: image a only = 1 of 3
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["acc_plus"] == pytest.approx(1 / 3)
    assert m["score"] == pytest.approx(100 * (4 / 6 + 1 / 3))
    assert (m["n"], m["n_images"], m["n_other"]) == (6, 3, 1)
    assert metrics.mme(rows[::-1]) == m  # grouped by image, not by line order
    with pytest.raises(ValueError, match="two questions per image"):
        metrics.mme(rows[:5])


def test_bootstrap_ci_brackets_the_statistic():
    items = [1] * 70 + [0] * 30
    lo, hi = metrics.bootstrap_ci(items, lambda xs: sum(xs) / len(xs), n_boot=500)
    assert lo < 0.7 < hi and hi - lo < 0.25
    assert metrics.bootstrap_ci(items, lambda xs: sum(xs) / len(xs), n_boot=500) == (lo, hi)  # seeded


def test_bootstrap_sums_ci_draws_the_same_resamples_as_bootstrap_ci():
    rng = np.random.default_rng(1)
    asked = rng.integers(0, 7, size=60)  # some items ask nothing: a zero denominator in a resample is 0, not NaN
    counts = np.stack([rng.binomial(asked, 0.7), asked], axis=1)
    fast = metrics.bootstrap_sums_ci(counts, lambda s: metrics.ratio(s[:, 0], s[:, 1]), n_boot=300, seed=3)
    slow = metrics.bootstrap_ci(list(counts), lambda xs: sum(x[0] for x in xs) / sum(x[1] for x in xs),
                                 n_boot=300, seed=3)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert metrics.ratio([1.0, 2.0], [0.0, 4.0]).tolist() == [0.0, 0.5]
    assert metrics.bootstrap_sums_ci(np.zeros((0, 2)), lambda s: s[:, 0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="n_items, k"):
        metrics.bootstrap_sums_ci([1, 2, 3], lambda s: s[:, 0])


def test_world_scores_bootstrap_as_rescoring_every_resample_would():
    """The world benchmarks' CIs come from summed counts; they must equal rescoring each resample
    with the metric functions themselves (resampling images)."""
    from halluscope import World
    from halluscope.benchmarks.world import WorldCHAIR, WorldPOPE

    rng = np.random.default_rng(0)
    world = World()
    questions = world.pope("adversarial", n_images=25)
    records = [dict(q, id=q["question_id"], prediction=str(rng.choice(["yes", "no", "No, there is not."])),
                    breaks_bias=[]) for q in questions]
    out = WorldPOPE(world, "adversarial", n_images=25).score(records)
    groups: dict = {}
    for r in sorted(records, key=lambda r: r["question_id"]):
        groups.setdefault(r["image_id"], []).append(r)
    for key in ("accuracy", "f1", "false_positive_rate"):
        slow = metrics.bootstrap_ci(list(groups.values()), lambda gs, key=key: metrics.pope(
            [r["prediction"] for g in gs for r in g], [r["label"] for g in gs for r in g])[key])
        assert out["ci95"][key] == pytest.approx(slow, abs=1e-12), key

    vocab = world_vocabulary()
    words = sorted(vocab) + ["the", "table", "and"]
    caps = [{"id": f"test-{i:06d}", "caption": " ".join(rng.choice(words, size=int(rng.integers(0, 9)))),
             "objects": sorted(set(rng.choice(sorted(set(vocab.values())), size=3))),
             "breaks_bias": ["lone:fork"] if i % 3 == 0 else []} for i in range(40)]
    out = WorldCHAIR(world, n_images=40).score(caps)

    def chair(rs, key):
        return metrics.chair_vocabulary([r["caption"] for r in rs], [r["objects"] for r in rs], vocab)[key]

    for key in ("chair_s", "chair_i"):
        expected = metrics.bootstrap_ci(caps, lambda rs, key=key: chair(rs, key))
        assert out["ci95"][key] == pytest.approx(expected, abs=1e-12)
    breaking = [r for r in caps if r["breaks_bias"]]
    for key in ("chair_s", "chair_i", "recall"):
        sub = out["subsets"]["breaking"][key]
        assert sub["value"] == pytest.approx(chair(breaking, key))
        expected = metrics.bootstrap_ci(breaking, lambda rs, key=key: chair(rs, key))
        assert sub["ci95"] == pytest.approx(expected, abs=1e-12)
