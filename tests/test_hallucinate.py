"""The hallucinated-text engine: mirrors contradict the ground truth in exactly the tagged way (checked
by a caption reader written here, independently of the engine), originals do not."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from halluscope.hallucinate import (
    KINDS, Hallucination, LLMHallucinator, RuleHallucinator, cooccurrence_table, cooccurring, negative_instructions,
    world_correction, world_hallucinations, world_negative_instructions,
)
from halluscope.metrics import caption_objects
from halluscope.world import NUMBERS, PLURALS, caption_parts, parse_world_caption, tokenize_words

SINGULAR = {p: c for c, p in PLURALS.items()} | {c: c for c in PLURALS}


PLACE = r"(?:one|two|three|four) (?:one|two|three|four)"


def read_caption(text):
    """(mentions [(n, small, color, cls)], relations [(a, rel, b)], places {(a, b): (place of a, place of b)}) of
    a world caption; a place sentence ("one three , four two") goes with the relation sentence after it."""
    sentences = [s.strip() for s in text.split(".") if s.strip()]
    head = re.fullmatch(r"the image shows (.+)", sentences[0]) or re.fullmatch(r"an? \w+ scene with (.+)", sentences[0])
    mentions = []
    for item in re.split(r", | and ", head.group(1)):
        words = item.split()
        n = 1 if words[0] in ("a", "an") else NUMBERS.index(words[0])
        adjectives = words[1:-1]
        color = next((w for w in adjectives if w != "small"), None)
        mentions.append((n, "small" in adjectives, color, SINGULAR[words[-1]]))
    sentence = r"the (\w+) is (left of|right of|above|below) the (\w+)"
    relations, places, said = [], {}, None
    for s in sentences[1:]:
        if where := re.fullmatch(f"({PLACE}) , ({PLACE})", s):
            said = where.groups()
            continue
        a, r, b = re.fullmatch(sentence, s).groups()
        relations.append((a, r, b))
        if said:
            places[a, b], said = said, None
    return mentions, relations, places


def errors(scene, text):
    """What `text` says that the scene contradicts."""
    counts = scene.counts()
    truth_relations = {(a, b): r for a, r, b in scene.relations()}
    mentions, relations, places = read_caption(text)
    out = set()
    for n, small, color, cls in mentions:
        objs = [o for o in scene.objects if o.cls == cls]
        if not objs:
            out.add(("absent", cls))
            continue
        if n != counts[cls]:
            out.add(("count", cls))
        if color is not None and any(o.color != color for o in objs):
            out.add(("color", cls))
        if small and not all(o.size == "small" for o in objs):
            out.add(("size", cls))
    for a, r, b in relations:
        if a in counts and b in counts and truth_relations.get((a, b)) != r:
            out.add(("relation", a, b))
    numbers = ["one", "two", "three", "four"]
    for (a, b), said in places.items():
        if counts.get(a) == 1 and counts.get(b) == 1:
            at = [next(f"{numbers[o.row]} {numbers[o.col]}" for o in scene.objects if o.cls == c) for c in (a, b)]
            if list(said) != at:
                out.add(("place", a, b))
    return out


def mentioned(text):
    return {m[3] for m in read_caption(text)[0]}


@pytest.mark.parametrize("style", ["detailed", "short"])
def test_world_mirrors_contradict_the_truth_in_exactly_the_tagged_way(world, style):
    seen = set()
    vocabulary = set(world.vocabulary())
    for i in range(150):
        scene = world.scene("test", i)
        original = world.caption(scene, style)
        assert errors(scene, original) == set()
        for h in world_hallucinations(world, scene, style, rng=i):
            seen.add(h.kind)
            assert h.original == original and h.source == "world"
            assert set(tokenize_words(h.text)) <= vocabulary
            found = errors(scene, h.text)
            old, new = h.changed
            if h.kind == "object":
                assert found == {("absent", new)} and old in scene.classes and new not in scene.classes
                assert mentioned(h.text) == mentioned(original) - {old} | {new}
            elif h.kind == "added":
                assert found == {("absent", new)} and old == ""
                assert mentioned(h.text) == mentioned(original) | {new}
            elif h.kind == "attribute":
                assert found == {("color", h.target)} and old != new
            elif h.kind == "count":
                assert found == {("count", h.target)} and NUMBERS.index(old) == scene.counts()[h.target]
            elif h.kind == "relation":
                (a, r, b), = set(read_caption(h.text)[1]) - set(read_caption(original)[1])
                assert found == {("relation", a, b)} and (a, r) == (h.target, new)
            # the same style and length: only the added object lengthens the caption
            if h.kind == "added":
                assert len(tokenize_words(h.text)) - len(tokenize_words(original)) in (3, 4)
            else:
                assert len(tokenize_words(h.text)) == len(tokenize_words(original))
    expected = set(KINDS) if style == "detailed" else {"object", "count", "added"}
    assert seen == expected


def said(parts, style):
    """What a caption of `parts` in `style` can say: the detailed style does not name the scene type."""
    return dataclasses.replace(parts, scene_type="") if style == "detailed" else parts


@pytest.mark.parametrize("style", ["detailed", "short"])
def test_the_grammar_reads_back_what_it_writes(world, style):
    """parse(render(parts)) == parts, for the truth and for every mirror (parts the engine edited),
    however the text is spaced; the reader refuses text outside the grammar."""
    mirrors = 0
    for i in range(400):
        scene = world.scene(("train", "val", "test")[i % 3], i)
        parts = caption_parts(scene, style)
        text = parts.render(style)
        assert text == world.caption(scene, style)
        for form in (text, " ".join(tokenize_words(text)), text.upper()):
            assert parse_world_caption(form) == (said(parts, style), style)
        for h in world_hallucinations(world, scene, style, rng=i):
            (read, read_style) = parse_world_caption(h.text)
            assert read_style == style and read.render(style) == h.text
            mirrors += 1
    assert mirrors > 400
    for text in ("the image shows a red", "the image shows a fork", "a kitchen scene with a fork. the fork is above "
                 "the knife.", "the image shows two fork.", "the image shows a red blue fork.", "a fork.",
                 "the image shows a fork and a cup. one two , three four.",
                 "a kitchen scene with a fork and a cup. one two , three four. the fork is above the cup."):
        assert parse_world_caption(text) is None, text
    with pytest.raises(ValueError, match="caption style"):
        caption_parts(world.scene("test", 0), "long")


def test_world_mirrors_of_an_object_use_its_cooccurring_partner(world):
    partners = world.config.partners()
    swaps = [(scene, h.changed) for scene in (world.scene("test", i) for i in range(200))
             for h in world_hallucinations(world, scene, kinds=["object"], rng=scene.index)]
    # An object whose partner is absent is swapped for that partner, ...
    lone = [(old, new) for scene, (old, new) in swaps if old in partners and partners[old] not in scene.classes]
    assert len(lone) > 20 and all(partners[old] == new for old, new in lone)
    # ... and otherwise for a class that shares its scene type, unless no present object has one left.
    for scene, (old, new) in swaps:
        if new not in cooccurring(world, old):
            assert all(m in scene.classes for c in scene.classes for m in cooccurring(world, c)), (old, new)


def test_world_correction_undoes_each_hallucination(world):
    for i in range(60):
        scene = world.scene("test", i)
        for style in ("detailed", "short"):
            for h in world_hallucinations(world, scene, style, rng=i):
                spaced = " ".join(tokenize_words(h.text))  # how the built-in model's outputs decode
                rejected, chosen = world_correction(scene, spaced)
                assert rejected == h.text and chosen == h.original


def test_world_correction_of_other_scenes_captions_is_true_and_minimal(world):
    for i in range(60):
        scene, other = world.scene("test", i), world.scene("test", i + 1000)
        rejected, chosen = world_correction(scene, world.caption(other))
        assert errors(scene, chosen) == set()
        assert rejected == world.caption(other)
        # no object the caption did not mention appears, unless it replaced an absent one
        n_absent = len(mentioned(rejected) - set(scene.classes))
        assert len(mentioned(chosen) - mentioned(rejected)) <= n_absent
    assert world_correction(world.scene("test", 0), "the image shows a red") is None
    assert world_correction(world.scene("test", 0), "a fork fork fork") is None


def test_world_negative_instructions_refuse_false_premises(world):
    vocabulary = set(world.vocabulary())
    kinds = set()
    for i in range(100):
        scene = world.scene("test", i)
        for q in world_negative_instructions(world, scene, rng=i):
            kinds.add(q["kind"])
            assert set(tokenize_words(q["question"] + " " + q["answer"])) <= vocabulary
            if q["kind"] == "absent_object":
                assert q["target"] not in scene.classes and q["answer"] == f"there is no {q['target']} in the image."
                assert q["target"] in q["question"]
            else:
                (o,) = [o for o in scene.objects if o.cls == q["target"]]
                said = re.fullmatch(rf"Is there a (\w+) {o.cls} in the image\?", q["question"]).group(1)
                assert said != o.color and q["answer"] == f"no, the {o.cls} is {o.color}."
    assert kinds == {"absent_object", "wrong_attribute"}


# ------------------------------------------------------------------------------------------- real captions
CAPTIONS = [
    ("A man in a red shirt is riding a horse next to two brown dogs on the left of a large wooden bench.",
     ["person", "horse", "dog", "bench"]),
    ("A plate with a fork and a knife sits on a white dining table above three bowls.",
     ["fork", "knife", "dining table", "bowl"]),
    ("An elephant stands behind a blue car in front of two buses.", ["elephant", "car", "bus"]),
]


def word_diff(a, b):
    wa, wb = a.lower().split(), b.lower().split()
    i = 0
    while i < min(len(wa), len(wb)) and wa[i] == wb[i]:
        i += 1
    j = 0
    while j < min(len(wa), len(wb)) - i and wa[-1 - j] == wb[-1 - j]:
        j += 1
    return " ".join(wa[i:len(wa) - j]), " ".join(wb[i:len(wb) - j])


@pytest.mark.parametrize("caption,objects", CAPTIONS)
def test_rule_mirrors_of_real_captions(caption, objects):
    hallucinator = RuleHallucinator(seed=0)
    assert set(caption_objects(caption, parity=False)) <= set(objects)  # the original is true
    results = hallucinator(caption, objects=objects)
    assert {h.kind for h in results} == set(KINDS)
    for h in results:
        assert h.source == "rules" and h.original == caption and h.text != caption
        old, new = h.changed
        found = caption_objects(h.text, parity=False)
        if h.kind == "object":
            assert new not in objects and new in found and old in objects
            # the most associated category of the swapped one that is not in the image
            assert new == next(c for c in hallucinator.cooccurrence[old] if c not in objects)
        elif h.kind == "added":
            assert new not in objects and new in found
            assert set(found) - {new} <= set(objects)
        else:  # one word or phrase replaced, the objects unchanged
            assert set(found) <= set(objects)
            removed, inserted = word_diff(caption, h.text)
            assert (removed.strip(".,"), inserted.strip(".,")) == (old, new)


def test_rule_mirrors_fix_articles_and_plurals():
    h = RuleHallucinator(cooccurrence={"dog": ("elephant",), "cat": ("mouse",)})
    (obj,) = h("A dog sleeps next to two cats.", objects=["dog", "cat"], kinds=["object"]) or [None]
    assert obj.text in ("An elephant sleeps next to two cats.", "A dog sleeps next to two mice.")


def test_cooccurrence_table_from_ground_truth_objects():
    gt = {1: ["fork", "knife", "person"], 2: ["fork", "knife"], 3: ["person", "car"], 4: ["person", "car", "knife"],
          5: ["person"]}
    table = cooccurrence_table(gt, top=2)
    assert table["fork"] == ("knife",)  # fork-person was seen once only (min_count 2)
    assert table["car"] == ("person",)
    assert table["knife"][0] == "fork"
    h = RuleHallucinator(gt_objects=gt)
    assert h.cooccurrence == table


def test_negative_instructions_for_real_images_ask_about_absent_cooccurring_objects():
    qs = negative_instructions(["fork", "dining table"], n=3, rng=0)
    assert len(qs) == 3
    for q in qs:
        assert q["target"] not in ("fork", "dining table") and q["answer"] == f"There is no {q['target']} in the image."
    assert qs[0]["target"] == "knife"  # fork's most associated category


def test_llm_hallucinator_runs_with_a_tiny_random_causal_lm(world):
    from transformers import LlamaConfig, LlamaForCausalLM

    from halluscope.models.tiny import build_tokenizer

    torch.set_num_threads(1)
    tok = build_tokenizer(world)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    engine = LLMHallucinator(model, tok, max_new_tokens=4, batch_size=3)
    captions = [world.caption(world.scene("test", i)) for i in range(2)]
    out = engine(captions, kinds=["object", "count"])
    assert [[h.kind for h in per] for per in out] == [["object", "count"], ["object", "count"]]
    assert all(isinstance(h, Hallucination) and isinstance(h.text, str) and h.source == "llm"
               for per in out for h in per)
    assert out[1][0].original == captions[1]
    single = engine(captions[0], kinds=["added"])
    assert len(single) == 1 and single[0].kind == "added"
    with pytest.raises(ValueError, match="unknown hallucination kind"):
        engine(captions, kinds=["colour"])


def test_unknown_kinds_fail_with_the_valid_ones(world):
    with pytest.raises(ValueError, match="object"):
        world_hallucinations(world, world.scene("test", 0), kinds=["nonsense"], rng=np.random.default_rng(0))


def test_steering_demos_draw_from_the_engine_kinds(world):
    import halluscope.steering.demos as demos

    assert demos.DEMO_KINDS == tuple(k for k in KINDS if k != "added")
    scene = world.scene("test", 3)
    kind, text = demos.hallucinated_caption(scene, world, np.random.default_rng(0), ("added",))
    assert kind == "added" and text in {h.text for h in world_hallucinations(world, scene, kinds=["added"], rng=0)}
    with pytest.warns(DeprecationWarning, match="DEMO_KINDS"):
        assert demos.HALLUCINATION_TYPES == demos.DEMO_KINDS
    with pytest.warns(DeprecationWarning, match="kinds="):
        old = demos.WorldHallucinator(world, 0, types=("count",))
    assert old.kinds == ("count",)
    with pytest.raises(ValueError, match="unknown hallucination kind"):
        demos.hallucinated_caption(scene, world, np.random.default_rng(0), ("colour",))
