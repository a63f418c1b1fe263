import dataclasses

import numpy as np
import pytest

from halluscope import World
from halluscope.world import (
    CLASSES, COLORS, GRID, IMAGE_SIZE, NUMBERS, PLURALS, POPE_TEMPLATE, WorldConfig, relation, tokenize_words,
)


def test_deterministic_by_seed_and_index(world):
    a = [np.array(s.image) for s in world.sample("test", 5)]
    b = [np.array(s.image) for s in World(seed=0).sample("test", 5)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # Scene i does not depend on what else was sampled.
    assert world.scene("test", 3) == world.sample("test", 2, start=3)[0].truth
    c = World(seed=1).scene("test", 0)
    assert c != world.scene("test", 0)


def test_splits_differ(world):
    assert world.scene("train", 0) != world.scene("test", 0)
    with pytest.raises(ValueError, match="unknown split"):
        world.scene("dev", 0)


def test_ground_truth_shape(world):
    for s in world.sample("train", 200):
        t = s.truth
        assert 1 <= len(t.objects) <= 5
        assert len({(o.row, o.col) for o in t.objects}) == len(t.objects)  # one object per cell
        for o in t.objects:
            assert o.cls in CLASSES and o.color in COLORS and o.size in ("large", "small")
            assert 0 <= o.x < IMAGE_SIZE and 0 <= o.y < IMAGE_SIZE
            assert o.x // (IMAGE_SIZE // GRID) == o.col and o.y // (IMAGE_SIZE // GRID) == o.row
        assert sum(t.counts().values()) == len(t.objects)
        assert np.array(s.image).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


def test_objects_are_drawn_where_the_truth_says():
    w = World(seed=0, noise_max=0, faint_prob=0, occlude_prob=0)
    for s in w.sample("test", 20):
        arr = np.array(s.image).astype(int)
        for o in s.truth.objects:
            cell = arr[o.row * 16 : o.row * 16 + 16, o.col * 16 : o.col * 16 + 16]
            assert (np.abs(cell - COLORS[o.color]).sum(-1) == 0).any(), o
        empty = {(r, c) for r in range(GRID) for c in range(GRID)} - {(o.row, o.col) for o in s.truth.objects}
        for r, c in empty:
            assert (arr[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] == (28, 28, 32)).all()


def _mentioned(caption):
    words = set(tokenize_words(caption))
    return {c for c in CLASSES if c in words or PLURALS[c] in words}


def test_captions_list_every_class_in_one_order_and_say_places_in_words():
    from halluscope.world.language import CAPTION_ORDER, PLACE_WORDS

    assert sorted(CAPTION_ORDER) == sorted(CLASSES) and CAPTION_ORDER[:4] == ("fork", "car", "tree", "book")
    assert PLACE_WORDS == ("one", "two", "three", "four") and len(PLACE_WORDS) == GRID


def test_captions_match_ground_truth(world):
    for s in world.sample("test", 200):
        t = s.truth
        for style in ("detailed", "short"):
            cap = world.caption(t, style)
            assert _mentioned(cap) == set(t.classes), (cap, t.classes)
        cap = world.caption(t, "detailed")
        for cls, n in t.counts().items():
            if n > 1:
                assert f"{NUMBERS[n]} " in cap and PLURALS[cls] in cap
        sentences = cap.split(". ")[1:]
        assert len(sentences) % 2 == 0  # each relation sentence after the sentence of its two places
        numbers = ["one", "two", "three", "four"]
        for where, sentence in zip(sentences[::2], sentences[1::2]):
            a, rel, b = sentence.removeprefix("the ").rstrip(".").split(" is ")[0], None, None
            rel_b = sentence.rstrip(".").split(" is ")[1]
            rel, b = rel_b.rsplit(" the ", 1)
            assert (a, rel, b) in t.relations(), (sentence, t.relations())
            oa, ob = (next(o for o in t.objects if o.cls == c) for c in (a, b))
            assert where == f"{numbers[oa.row]} {numbers[oa.col]} , {numbers[ob.row]} {numbers[ob.col]}", cap


def test_questions_have_exact_answers(world):
    rng = np.random.default_rng(0)
    for s in world.sample("test", 100):
        t = s.truth
        for q in world.questions(t, rng):
            if q["type"] == "existence":
                cls = q["question"].split(" a ")[1].split(" in ")[0]
                assert q["answer"] == ("yes" if cls in t.classes else "no")
            elif q["type"] == "count":
                plural = q["question"].split("many ")[1].split(" are")[0]
                cls = {v: k for k, v in PLURALS.items()}[plural]
                assert q["answer"] == NUMBERS[t.counts().get(cls, 0)]
            elif q["type"] == "attribute":
                cls = q["question"].split("the ")[1].rstrip("?")
                assert q["answer"] == next(o.color for o in t.objects if o.cls == cls)


def test_yes_no_training_questions_are_balanced_and_exact(world):
    """attribute_yes_no and count_yes_no ask world-qa's yes/no wording with the true value half the time; a count
    answer points at each object of the class first ("two three , four one , two , no")."""
    rng = np.random.default_rng(0)
    answers = {"attribute_yes_no": [], "count_yes_no": []}
    singular = {v: k for k, v in PLURALS.items()}
    for s in world.sample("train", 200):
        t, counts = s.truth, s.truth.counts()
        for qtype in answers:
            q = world.question(t, qtype, rng)
            if q is None:
                continue
            answers[qtype].append(q["answer"].split(" , ")[-1])
            words = q["question"].rstrip("?").split()
            if qtype == "attribute_yes_no":  # Is the fork red?
                cls, color = words[2], words[3]
                assert q["answer"] == ("yes" if next(o.color for o in t.objects if o.cls == cls) == color else "no")
            else:  # Is there one fork? / Are there two forks?
                n, cls = NUMBERS.index(words[2]), singular.get(words[3], words[3])
                *places, said, verdict = q["answer"].split(" , ")
                numbers = ["one", "two", "three", "four"]
                mine = sorted((o.row, o.col) for o in t.objects if o.cls == cls)  # reading order
                assert places == [f"{numbers[r]} {numbers[c]}" for r, c in mine]
                assert said == NUMBERS[counts[cls]] and verdict == ("yes" if counts[cls] == n else "no")
    for qtype, said in answers.items():
        assert len(said) > 100 and 0.4 < said.count("yes") / len(said) < 0.6, qtype
    assert {q["type"] for q in world.questions(world.scene("train", 0), rng)} <= set(World.QUESTION_TYPES)


def test_vocabulary_covers_all_texts(world):
    vocab = set(world.vocabulary())
    rng = np.random.default_rng(1)
    for s in world.sample("train", 300):
        texts = [world.caption(s.truth), world.caption(s.truth, "short")]
        texts += [q["question"] + " " + q["answer"] for q in world.questions(s.truth, rng)]
        for text in texts:
            assert set(tokenize_words(text)) <= vocab, text


def test_cooccurrence_knob_controls_partner_rate():
    def partner_rate(w):
        partners = w.config.partners()
        with_partner = total = 0
        for i in range(600):
            classes = w.scene("train", i).classes
            for c in classes:
                if c in partners:
                    total += 1
                    with_partner += partners[c] in classes
        return with_partner / total

    # Partners share a scene, so they meet without the pair knob too; the knob adds to that.
    biased, unpaired = partner_rate(World(seed=0)), partner_rate(World(seed=0, cooccurrence_strength=0.0))
    assert biased > 0.85 and unpaired < 0.65
    assert partner_rate(World(seed=0, cooccurrence_strength=0.0, scene_strength=0.0)) < 0.3


def test_color_prior_and_yes_bias_knobs():
    w = World(seed=0)
    trees = [o.color for i in range(800) for o in w.scene("train", i).objects if o.cls == "tree"]
    assert trees.count("green") / len(trees) > 0.75
    rng = np.random.default_rng(0)
    answers = [w.questions(w.scene("train", i), rng)[0]["answer"] for i in range(1000)]
    assert 0.55 < answers.count("yes") / 1000 < 0.65
    w_flat = World(seed=0, yes_bias=0.5)
    answers = [w_flat.questions(w_flat.scene("train", i), rng)[0]["answer"] for i in range(1000)]
    assert 0.45 < answers.count("yes") / 1000 < 0.55


def test_bias_breaking_test_images(world):
    partners = world.config.partners()
    scenes = [world.scene("test", i) for i in range(400)]
    breaking = [s for s in scenes if s.breaks_bias]
    assert 0.35 < len(breaking) / len(scenes) < 0.65
    assert not any(world.scene("train", i).breaks_bias for i in range(200))
    kinds = set()
    for s in breaking:
        for reason in s.breaks_bias:
            kind, cls = reason.split(":")
            kinds.add(kind)
            if kind == "lone":
                assert cls in s.classes and partners[cls] not in s.classes
            elif kind == "color":
                usual = world.config.color_priors[cls]  # only classes with a usual colour can break it
                assert all(o.color != usual for o in s.objects if o.cls == cls)
            elif kind == "count":
                assert s.counts()[cls] != world.config.count_priors[cls]
            else:
                ((a, rel, b),) = [p for p in world.config.spatial_priors if p[0] == cls]
                (oa,), (ob,) = [o for o in s.objects if o.cls == a], [o for o in s.objects if o.cls == b]
                assert relation(oa, ob) != rel
    assert kinds == {"lone", "color", "count", "side"}


def test_knobs_carry_their_help():
    help = WorldConfig.help()
    assert list(help) == [f.name for f in dataclasses.fields(WorldConfig)]
    assert all(h["help"] for h in help.values())
    assert help["yes_bias"]["default"] == 0.6 and help["scenes"]["default"] == WorldConfig().scenes


def test_class_frequency_is_estimated_once(world):
    freq = world.class_frequency()
    assert freq is world.class_frequency()
    assert freq.shape == (len(CLASSES),) and abs(freq.sum() - 1) < 1e-12 and (freq > 0).all()


def test_invalid_knobs_fail_with_a_fix():
    with pytest.raises(ValueError, match="cooccurrence_strength.*probability"):
        World(cooccurrence_strength=1.5)
    with pytest.raises(TypeError, match="unknown world knob.*valid knobs"):
        World(cooccurence_strength=0.5)
    with pytest.raises(ValueError, match="cooccurrence_pairs"):
        World(cooccurrence_pairs=[("fork", "spoon")])
    with pytest.raises(ValueError, match="spatial_priors.*relation from"):
        World(spatial_priors=[("fork", "beside", "knife")])
    with pytest.raises(ValueError, match="spatial_priors.*two different classes"):
        World(spatial_priors=[("fork", "left of", "fork")])
    with pytest.raises(ValueError, match="spatial_priors.*two priors; keep one"):
        World(spatial_priors=[("fork", "left of", "knife"), ("knife", "above", "fork")])
    with pytest.raises(ValueError, match="count_priors.*from 2 to 5"):
        World(count_priors={"lamp": 1})
    with pytest.raises(ValueError, match="count_priors.*map classes"):
        World(count_priors={"spoon": 2})
    with pytest.raises(ValueError, match="spatial_prior_strength.*probability"):
        World(spatial_prior_strength=1.1)
    with pytest.raises(ValueError, match="count_prior_strength.*probability"):
        World(count_prior_strength=-0.1)
    # knobs from the command line arrive as lists
    assert World(spatial_priors=[["cup", "above", "plate"]]).config.spatial_priors == (("cup", "above", "plate"),)


@pytest.mark.parametrize("split", ["random", "popular", "adversarial"])
def test_pope_construction_rules(world, split):
    qs = world.pope(split, n_images=60)
    assert [q["question_id"] for q in qs] == list(range(1, len(qs) + 1))
    assert len(qs) == 60 * 6
    for i in range(0, len(qs), 6):
        block = qs[i : i + 6]
        assert len({q["image_id"] for q in block}) == 1
        assert [q["label"] for q in block] == ["yes", "no"] * 3  # alternating, positive first
        truth = world.scene("test", int(block[0]["image_id"].split("-")[1]))
        assert [q["object"] for q in block[::2]] == truth.classes[:3]  # first 3 ground-truth objects
        negatives = [q["object"] for q in block[1::2]]
        assert len(set(negatives)) == 3 and not set(negatives) & set(truth.classes)
        for q in block:
            assert q["text"] == POPE_TEMPLATE.format(q["object"])
            assert set(q) >= {"question_id", "image", "text", "label"}
    assert world.pope(split, n_images=10)[0]["image"].size == (IMAGE_SIZE, IMAGE_SIZE)


def test_pope_fails_where_an_image_leaves_too_few_absent_classes():
    crowded = World(seed=0, min_objects=14, max_objects=16)
    with pytest.raises(ValueError, match="absent classes.*max_objects"):
        crowded.pope("random", n_images=5)


def test_pope_negative_strategies(world):
    """Popular negatives are the most frequent absent objects; adversarial ones the absent
    objects that co-occur most with the positive they follow."""
    from collections import Counter

    scenes = world.pope_scenes(60)
    freq = Counter(c for s in scenes for c in s.classes)
    order = [c for c, _ in sorted(freq.items(), key=lambda kv: kv[1], reverse=True)]
    popular = world.pope("popular", n_images=60)
    for i in range(0, len(popular), 6):
        gt = set(scenes[i // 6].classes)
        expected = [c for c in order if c not in gt][:3]
        assert [q["object"] for q in popular[i + 1 : i + 6 : 2]] == expected
    adversarial = world.pope("adversarial", n_images=60)
    partners = world.config.partners()
    hits = total = 0
    for i in range(0, len(adversarial), 6):
        gt = set(scenes[i // 6].classes)
        for pos, neg in zip(adversarial[i : i + 6 : 2], adversarial[i + 1 : i + 6 : 2]):
            if partners.get(pos["object"]) and partners[pos["object"]] not in gt:
                total += 1
                hits += neg["object"] == partners[pos["object"]]
    assert total > 5 and hits == total  # the absent partner is always the first adversarial pick


# sha256 (first 16 hex digits) of the JSON of scenes 0..299 of each split, drawn by the sampler before the
# count and spatial priors existed: a world without them must draw exactly those scenes.
SCENES_BEFORE_THE_NEW_PRIORS = {"train": "60b6b4a121a21df0", "val": "eb2928289be11eec", "test": "dd5646fe1608b1d1"}


def test_a_world_without_count_and_spatial_priors_draws_the_scenes_it_drew_before():
    import hashlib
    import json

    w = World(spatial_priors=(), count_priors={})
    for split, digest in SCENES_BEFORE_THE_NEW_PRIORS.items():
        h = hashlib.sha256()
        for i in range(300):
            h.update(json.dumps(w.scene(split, i).to_dict(), sort_keys=True).encode())
        assert h.hexdigest()[:16] == digest, split


def test_with_the_priors_training_scenes_keep_their_objects_where_no_count_prior_is_present(world):
    bare = World(spatial_priors=(), count_priors={})
    for i in range(300):
        a, b = bare.scene("train", i), world.scene("train", i)
        if not set(a.classes) & set(world.config.count_priors):
            # the spatial priors only move objects: same classes, colours and sizes
            assert [(o.cls, o.color, o.size) for o in a.objects] == [(o.cls, o.color, o.size) for o in b.objects]


def _usual_side_share(w, n=1500):
    hits = total = 0
    for i in range(n):
        s = w.scene("train", i)
        counts = s.counts()
        for a, rel, b in w.config.spatial_priors:
            if counts.get(a) == 1 and counts.get(b) == 1:
                (oa,), (ob,) = [o for o in s.objects if o.cls == a], [o for o in s.objects if o.cls == b]
                total += 1
                hits += relation(oa, ob) == rel
    return hits / total


def _usual_count_share(w, n=1500):
    counts = [(c, s.counts()[c]) for i in range(n) for s in [w.scene("train", i)] for c in w.config.count_priors
              if c in s.counts()]
    return sum(k == w.config.count_priors[c] for c, k in counts) / len(counts)


def test_spatial_prior_knob_controls_the_usual_side():
    strong, off = _usual_side_share(World()), _usual_side_share(World(spatial_prior_strength=0.0))
    assert strong > 0.8 and off < 0.35  # at random a pair is on one given side about a quarter of the time
    assert _usual_side_share(World(spatial_prior_strength=1.0)) > 0.95


def test_count_prior_knob_controls_the_usual_number():
    strong, off = _usual_count_share(World()), _usual_count_share(World(count_prior_strength=0.0))
    assert strong > 0.75 and off < 0.25  # without it, two only by duplicate_prob's chance
    w = World(count_priors={"lamp": 3}, count_prior_strength=1.0)
    lamps = [w.scene("train", i).counts().get("lamp") for i in range(600)]
    assert sum(n == 3 for n in lamps if n) / sum(1 for n in lamps if n) > 0.6  # room permitting
    for min_objects in (3, 5):  # the room kept for the usual number never leaves an image too empty
        w = World(min_objects=min_objects, max_objects=5)
        assert min(len(w.scene(split, i).objects) for split in ("train", "test") for i in range(200)) >= min_objects
