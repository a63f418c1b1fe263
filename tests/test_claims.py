"""Claims of world captions (world/claims.py) judged against hand-built scenes, and the claim metrics of
world-CHAIR (their intervals equal rescoring every resample)."""

import numpy as np
import pytest

from halluscope import World, metrics
from halluscope.tasks.world import CLAIM_KEYS, WorldCHAIR
from halluscope.world import Scene, WorldObject
from halluscope.world.claims import caption_claims, parse_claims, repeats_a_phrase


def obj(cls, color, row, col, size="large"):
    return WorldObject(cls=cls, color=color, size=size, row=row, col=col, x=col * 16 + 8, y=row * 16 + 8)


# fork (red, row 0 col 0) left of the knife (blue, row 0 col 2); two cups (blue and green) below them.
SCENE = Scene("test-000000", "test", 0, "kitchen", [
    obj("fork", "red", 0, 0), obj("knife", "blue", 0, 2, size="small"),
    obj("cup", "blue", 2, 0), obj("cup", "green", 3, 3)], noise=0.0)


def verdicts(caption, scene=SCENE, config=None):
    claims = caption_claims(caption, scene, config)
    for c in claims:  # every span is the claim's text in the caption
        assert caption[c.span[0]:c.span[1]] == c.text
    return [(c.kind, c.text, c.true, c.reason) for c in claims]


def test_the_true_caption_makes_only_true_claims(world):
    for i in range(300):
        scene = world.scene("test", i)
        claims = caption_claims(world.caption(scene), scene, world.config)
        assert claims and all(c.true for c in claims), world.caption(scene)
        assert {c.cls for c in claims if c.kind == "object"} == set(scene.classes)


def test_objects_attributes_and_counts():
    got = verdicts("the image shows a red fork, a small knife, two cups and a purple dog.")
    assert got == [
        ("count", "a", True, None), ("attribute", "red", True, None), ("object", "fork", True, None),
        ("count", "a", True, None), ("attribute", "small", True, None), ("object", "knife", True, None),
        ("count", "two", True, None), ("object", "cups", True, None),
        ("object", "dog", False, "absent"),  # no colour or count claim about an absent class
    ]
    got = verdicts("the image shows a blue fork, a small red knife and a cup.")
    assert ("attribute", "blue", False, "wrong") in got and ("attribute", "red", False, "wrong") in got
    assert ("attribute", "small", True, None) in got and ("count", "a", False, "wrong") in got  # two cups, not one
    # plural counts: "two blue cups" needs two blue cups; "a green cup" one green cup
    assert ("attribute", "blue", False, "wrong") in verdicts("the image shows two blue cups.")
    assert ("attribute", "green", True, None) in verdicts("the image shows a green cup.")
    assert ("count", "three", False, "wrong") in verdicts("the image shows three cups.")


def test_a_repeated_phrase_claims_another_object():
    caption = "the image shows a red fork and a red fork."
    assert repeats_a_phrase(caption) and not repeats_a_phrase("the image shows a red fork and a knife.")
    got = verdicts(caption)
    assert got.count(("object", "fork", True, None)) == 1  # one object claim per class
    assert ("count", "a red fork", False, "repeat") in got  # two forks claimed, one there
    # two cups named as two phrases: the count is right
    assert ("count", "a green cup", True, None) in verdicts("the image shows a blue cup and a green cup.")


def test_relations():
    got = verdicts("the image shows a fork and a knife. the fork is left of the knife. the knife is above the fork. "
                   "the fork is left of the fork. the fork is right of the dog.")
    rel = [g for g in got if g[0] == "relation"]
    assert rel == [("relation", "the fork is left of the knife", True, None),
                   ("relation", "the knife is above the fork", False, "wrong"),
                   ("relation", "the fork is left of the fork", False, "self"),
                   ("relation", "the fork is right of the dog", False, "absent")]
    assert ("object", "dog", False, "absent") in got  # named in a relation only: an object claim too
    # a class with two objects: true when some pair holds
    def relation_verdict(caption):
        return next(g[2] for g in verdicts(caption) if g[0] == "relation")

    assert relation_verdict("the image shows a fork. the fork is above the cup.") is True
    assert relation_verdict("the image shows a fork. the fork is left of the cup.") is True  # the one at (3, 3)
    assert relation_verdict("the image shows a fork. the cup is left of the fork.") is False


def test_lenient_parsing_keeps_what_it_can_read():
    caption = "the image shows a red fork , blah blah , two cups . the fork is near the knife . the fork is left of"
    parsed = parse_claims(caption)
    kinds = [(c.kind, c.text) for c in parsed.claims]
    assert kinds == [("count", "a"), ("attribute", "red"), ("object", "fork"), ("count", "two"), ("object", "cups")]
    assert [caption[s:e] for s, e in parsed.unparsed] == ["blah blah", "the fork is near the knife",
                                                          "the fork is left of"]
    assert parse_claims("").claims == [] and parse_claims("..").claims == []


def test_place_sentences_are_read_as_grammar_that_claims_nothing():
    """The places said before a relation ("one three , four two .") are the model's working: no claim, and not
    text outside the grammar; the relation after them is claimed as without them."""
    plain = "the image shows a fork and a cup. the fork is above the cup."
    placed = "the image shows a fork and a cup. one one , two one. the fork is above the cup."
    a, b = parse_claims(plain), parse_claims(placed)
    assert b.unparsed == [] and [(c.kind, c.text) for c in a.claims] == [(c.kind, c.text) for c in b.claims]
    assert placed[slice(*next(c for c in b.claims if c.kind == "relation").span)] == "the fork is above the cup"
    # a place sentence with a word that is not a place is outside the grammar
    assert [placed.replace("one one", "one nine")[s:e] for s, e in
            parse_claims(placed.replace("one one", "one nine")).unparsed] == ["one nine , two one"]
    # The relation keeps the cells its places said (row, column from 0), so that one can tell a relation that
    # disagrees with its own places from one read off wrong places; a place sentence counts for the next one only.
    rel = next(c for c in b.claims if c.kind == "relation")
    assert rel.places == ((0, 0), (1, 0)) and rel.to_dict()["places"] == [[0, 0], [1, 0]]
    assert next(c for c in a.claims if c.kind == "relation").places is None
    two = parse_claims(placed + " the cup is below the fork.").claims
    assert [c.places for c in two if c.kind == "relation"] == [((0, 0), (1, 0)), None]


def test_prior_and_bias_breaking_marks():
    world = World()
    scene = Scene("test-000001", "test", 1, "park", [obj("tree", "blue", 0, 0), obj("dog", "red", 1, 1)], 0.0,
                  breaks_bias=["color:tree", "lone:dog"])
    claims = caption_claims("the image shows a green tree, a dog and a ball.", scene, world.config)
    tree = next(c for c in claims if c.kind == "attribute")
    assert not tree.true and tree.prior and tree.breaks_bias
    ball = next(c for c in claims if c.cls == "ball")
    assert not ball.true and ball.breaks_bias  # the absent partner of a lone pair member
    assert not next(c for c in claims if c.cls == "dog").breaks_bias


@pytest.fixture(scope="module")
def chair_records():
    world = World()
    task = WorldCHAIR(world, n_images=60)
    rng = np.random.default_rng(0)
    words = ("the image shows a an two small red green blue , and . fork knife cup cups plate tree dog ball "
             "is left of right above below the").split()
    records = []
    for s in task.samples():
        caption = world.caption(s["scene"]) if rng.random() < 0.3 else " ".join(rng.choice(words, size=14))
        if rng.random() < 0.3:
            caption = "the image shows a red fork and a red fork. the fork is left of the cup."
        records.append(task.record(s, {"text": caption}))
    return task, records


def test_chair_records_keep_their_fields_and_list_claims(chair_records):
    task, records = chair_records
    for r in records:
        assert {"id", "caption", "objects", "breaks_bias", "claims", "repeats_phrase"} <= set(r)
        for c in r["claims"]:
            assert {"kind", "text", "span", "true"} <= set(c) and r["caption"][slice(*c["span"])] == c["text"]


def test_claim_intervals_equal_rescoring(chair_records):
    task, records = chair_records
    out = task.score(records)
    assert set(out["claims"]) == set(CLAIM_KEYS) and "chair_i" in out

    def share(rs, kind):
        cs = [c for r in rs for c in r["claims"] if kind == "all" or c["kind"] == kind]
        return sum(not c["true"] for c in cs) / len(cs) if cs else 0.0

    def coverage(rs):
        named = sum(len({c["class"] for c in r["claims"] if c["kind"] == "object" and c["true"]}) for r in rs)
        return named / sum(len(r["objects"]) for r in rs)

    for kind in CLAIM_KEYS:
        got = out["claims"][kind]
        assert 0 <= got["value"] <= 1 and got["value"] == pytest.approx(share(records, kind))
        assert got["ci95"] == pytest.approx(metrics.bootstrap_ci(records, lambda rs, k=kind: share(rs, k)), abs=1e-12)
    assert out["coverage"]["value"] == pytest.approx(coverage(records))
    assert out["coverage"]["ci95"] == pytest.approx(metrics.bootstrap_ci(records, coverage), abs=1e-12)
    repeats = sum(r["repeats_phrase"] for r in records) / len(records)
    assert out["repeats_phrase"]["value"] == pytest.approx(repeats) and 0 < repeats < 1
    assert out["false_reasons"]["relation"]["absent"] > 0 and out["false_reasons"]["count"]["repeat"] > 0
    breaking = [r for r in records if r["breaks_bias"]]
    assert out["claims_subsets"]["breaking"]["all"]["value"] == pytest.approx(share(breaking, "all"))


def test_old_records_without_claims_are_scored_from_their_scene(chair_records):
    task, records = chair_records
    old = [{k: r[k] for k in ("id", "caption", "objects", "breaks_bias")} for r in records]
    assert task.score(old) == task.score(records)


def test_count_and_side_priors_mark_claims():
    world = World()
    scene = Scene("test-000002", "test", 2, "street", [
        obj("lamp", "red", 0, 0), obj("car", "blue", 1, 3), obj("bus", "yellow", 1, 0)], 0.0,
        breaks_bias=["count:lamp", "side:car"])
    claims = caption_claims("the image shows two lamps, a car and a bus. the car is left of the bus. "
                            "the bus is left of the car.", scene, world.config)
    lamp = next(c for c in claims if c.kind == "count" and c.cls == "lamp")
    assert not lamp.true and lamp.prior and lamp.breaks_bias  # the usual two, where there is one
    rel = [c for c in claims if c.kind == "relation"]
    assert [(c.true, c.prior, c.breaks_bias) for c in rel] == [(False, True, True), (True, False, True)]
    car = next(c for c in claims if c.kind == "count" and c.cls == "car")
    assert car.true and car.prior is None and not car.breaks_bias
