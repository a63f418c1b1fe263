"""world-qa: AMBER-style questions of every kind built from the exact truth (world/qa.py), their scoring
(intervals equal rescoring every resample of images), the registry, and batch-size independence."""

import numpy as np
import pytest

from halluscope import World, metrics
from halluscope.runner import read_jsonl, run_benchmark
from halluscope.tasks import TASKS, make_task, task_names
from halluscope.tasks.world import WorldQA, parse_open_answer
from halluscope.world import COLORS, NUMBERS, QA_KINDS, relation

from micro_eval import micro_adapter


@pytest.fixture(scope="module")
def questions(world):
    return {k: world.qa(k, n_images=80) for k in QA_KINDS}


def test_registered(world):
    assert set(TASKS["world-qa"].subsets) == set(QA_KINDS)
    assert {f"world-qa:{k}" for k in QA_KINDS} <= set(task_names())
    assert make_task("world-qa:relation", n_images=3, world=world).name == "world-qa:relation"
    with pytest.raises(ValueError, match="world-qa"):
        make_task("world-qa:colour")
    with pytest.raises(ValueError, match="kind"):
        WorldQA(world, "size")


def test_answers_are_the_truth(world, questions):
    for kind, qs in questions.items():
        images = {q["image_id"] for q in qs}
        assert len(images) == 80 and [q["question_id"] for q in qs] == list(range(1, len(qs) + 1))
        for image in images:
            mine = [q for q in qs if q["image_id"] == image]
            yn = [q["label"] for q in mine if q["form"] == "yes_no"]
            assert sorted(yn) == (["no", "yes"] if kind != "existence" or len(yn) == 2 else ["yes"])  # balanced
            assert len({q["object"] for q in mine}) == 1 or kind == "existence"
        for q in qs:
            scene = world.scene("test", int(q["image_id"].split("-")[1]))
            counts = scene.counts()
            if kind == "existence":
                assert (q["object"] in counts) == (q["label"] == "yes")
            elif kind == "attribute":
                (o,) = [o for o in scene.objects if o.cls == q["object"]]
                truth = o.color if q["form"] == "open" else ("yes" if q["value"] == o.color else "no")
                assert q["label"] == truth and (q["label"] in COLORS) == (q["form"] == "open")
            elif kind == "count":
                n = counts[q["object"]]
                truth = NUMBERS[n] if q["form"] == "open" else ("yes" if q["value"] == n else "no")
                assert q["label"] == truth
            else:
                (a,) = [o for o in scene.objects if o.cls == q["object"]]
                (b,) = [o for o in scene.objects if o.cls == q["other"]]
                assert q["label"] == ("yes" if relation(a, b) == q["value"] else "no")
                assert q["text"] == f"Is the {a.cls} {q['value']} the {b.cls}?"


def test_breaking_items_are_asked_about_the_prior(world, questions):
    # attribute: an object in an unusual colour; the false question asks its usual colour, which the prior affirms
    breaking = [q for q in questions["attribute"] if q["breaks"]]
    assert breaking
    for q in breaking:
        usual = world.config.color_priors[q["object"]]
        if q["form"] == "yes_no" and q["label"] == "no":
            assert q["value"] == usual and q["prior"] == "yes"
        if q["form"] == "open":
            assert q["prior"] == usual != q["label"]
    # existence: the missing partner of a present pair member
    partners = world.config.partners()
    for q in questions["existence"]:
        if q["breaks"]:
            assert q["label"] == "no" and q["prior"] == "yes" and q["object"] in partners
    assert any(q["breaks"] for q in questions["existence"])
    # count: a class without its usual number; the false question asks the usual number
    breaking = [q for q in questions["count"] if q["breaks"]]
    assert breaking and all(q["object"] in world.config.count_priors for q in breaking)
    for q in breaking:
        if q["form"] == "yes_no" and q["label"] == "no":
            assert q["value"] == world.config.count_priors[q["object"]] and q["prior"] == "yes"
    # relation: a pair off its usual sides, asked in the prior's order; the false question asks the usual side
    breaking = [q for q in questions["relation"] if q["breaks"]]
    assert breaking
    for q in breaking:
        usual = world.config.usual_relation(q["object"], q["other"])
        assert (q["object"], usual, q["other"]) in world.config.spatial_priors
        if q["label"] == "no":
            assert q["value"] == usual and q["prior"] == "yes"
        else:
            assert q["value"] != usual and q["prior"] == "no"
    conforming = [q for q in questions["relation"] if not q["breaks"] and q["prior"] is not None]
    assert conforming and all(q["prior"] == q["label"] for q in conforming)
    # a world without priors has no bias-breaking items and no prior answers
    bare = World(color_priors={}, spatial_priors=(), count_priors={}, cooccurrence_pairs=())
    for kind in QA_KINDS:
        assert not any(q["breaks"] or q["prior"] for q in bare.qa(kind, n_images=20))
    # deterministic
    assert [q["text"] for q in world.qa("count", n_images=80)] == [q["text"] for q in questions["count"]]


def test_open_answers_parse():
    assert parse_open_answer("attribute", "it is green .") == "green"
    assert parse_open_answer("count", "2") == "two" and parse_open_answer("count", "three forks") == "three"
    assert parse_open_answer("count", "") == ""
    # a count's number is its last: the built-in model says the places of what it counts first
    assert parse_open_answer("count", "two three , four one , two") == "two"
    assert parse_open_answer("count", "four four , one") == "one" and parse_open_answer("count", "zero") == "zero"


def _rescored(records, key):
    yn = [r for r in records if r["form"] == "yes_no"]
    if key == "prior_share":
        wrong = [r for r in yn if r["prediction"] != r["label"]]
        return sum(r["prediction"] == r["prior"] for r in wrong) / len(wrong) if wrong else 0.0
    return metrics.pope([r["prediction"] for r in yn], [r["label"] for r in yn])[key]


@pytest.mark.parametrize("kind", QA_KINDS)
def test_intervals_equal_rescoring(world, questions, kind):
    rng = np.random.default_rng(1)
    task = WorldQA(world, kind, n_images=80)
    records = []
    for q in questions[kind]:
        if q["form"] == "yes_no":
            answer = {"prediction": str(rng.choice(["yes", "no"]))}
        else:
            answer = {"text": str(rng.choice(list(COLORS) if kind == "attribute" else NUMBERS[1:4]))}
        records.append(task.record(dict(q, id=q["question_id"]), answer))
    out = task.score(records)
    groups: dict = {}
    for r in records:
        groups.setdefault(r["image_id"], []).append(r)
    for key in ("accuracy", "precision", "recall", "f1", "prior_share"):
        assert out[key] == pytest.approx(_rescored(records, key))
        slow = metrics.bootstrap_ci(list(groups.values()), lambda gs, k=key: _rescored([r for g in gs for r in g], k))
        assert out["yes_no"]["ci95"][key] == pytest.approx(slow, abs=1e-12), key
    for name, sub in out["yes_no"]["subsets"].items():
        mine = [r for r in records if r["form"] == "yes_no" and (r["breaks"] == (name == "breaking"))
                and (name != "prior_conforming" or r["prior"] is not None)]
        assert sub["accuracy"] == pytest.approx(_rescored(mine, "accuracy")) and sub["n"] == len(mine)
    if kind in ("attribute", "count"):
        opened = [r for r in records if r["form"] == "open"]
        assert out["open_accuracy"] == pytest.approx(np.mean([r["prediction"] == r["label"] for r in opened]))
    else:
        assert "open" not in out


@pytest.mark.parametrize("qtype", ["relation", "count_yes_no"])
def test_relation_and_count_questions_are_generated_and_read_at_the_verdict(world, qtype):
    """The built-in model answers a relation with places and relation first ("one three , two one , below , no")
    and a count with places and number first ("two three , four one , two , no"): world-qa generates those
    answers whatever its yes/no mode, long enough for the verdict, and POPE's parser reads the verdict off them;
    training answers have that form, test questions keep their yes/no labels."""
    from halluscope.decoding.adapter import YES_NO_MAX_NEW_TOKENS
    from halluscope.world import tokenize_words

    kind = qtype.removesuffix("_yes_no")
    for asked, mode in ((kind, "generate"), ("existence", "score")):
        task = WorldQA(world, asked, n_images=2, mode="score")
        assert {task.request(q).mode for q in task.samples() if q["form"] == "yes_no"} == {mode}
    rng, trained = np.random.default_rng(0), []
    for i in range(200):
        q = world.question(world.scene("train", i), qtype, rng)
        if q is not None:
            trained.append(q["answer"])
            assert len(tokenize_words(q["answer"])) <= YES_NO_MAX_NEW_TOKENS
    assert all(len(a.split(" , ")) >= 3 and a.split(" , ")[-1] in ("yes", "no") for a in trained), trained[:3]
    assert all(metrics.parse_yes_no(a) == a.split(" , ")[-1] for a in trained)
    assert {metrics.parse_yes_no(a) for a in trained} == {"yes", "no"}
    test = [world.question(world.scene("test", i), qtype, rng) for i in range(20)]
    assert {q["answer"] for q in test if q} == {"yes", "no"}


def test_batch_1_equals_batch_16(world, tmp_path):
    adapter = micro_adapter(world)
    for kind in ("count", "relation"):
        task = WorldQA(world, kind, n_images=4)
        a = run_benchmark(task, adapter, tmp_path / "b1", batch_size=1, progress=False)
        b = run_benchmark(task, adapter, tmp_path / "b16", batch_size=16, progress=False)
        stem = f"world-qa_{kind}.jsonl"
        answers = [[{k: v for k, v in r.items() if k != "logprob_yes_no"} for r in read_jsonl(tmp_path / d / stem)]
                   for d in ("b1", "b16")]  # the log-probabilities agree to float rounding, the answers exactly
        assert answers[0] == answers[1] and any(r["form"] == "open" for r in answers[0]) == (kind == "count")
        assert a["metrics"] == b["metrics"] and a["n_samples"] == len(task.samples())
