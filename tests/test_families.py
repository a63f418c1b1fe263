"""Every method on every tested VLM family, peft-style: one table of methods (`METHODS_TABLE`) run through the
same checks on a tiny random model of each family (the `family` fixture over `tiny_vlms.FAMILIES`: LLaVA-1.5,
LLaVA-NeXT, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Idefics3, SmolVLM, PaliGemma, Gemma 3, InstructBLIP,
Mllama). Where a method cannot apply to a family, `CANNOT` says which error it must raise and what works
instead; the checks then run on that.

Also per family: the parts and image tokens, batch 1 equals batch 8 for every greedy method, and the
generation config's processors honoured by every method (greedy == VCD with alpha = 0 == M3ID with
lambda = 0 under a repetition penalty, no repeated 3-grams, a list of EOS ids and a minimum length).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from tiny_vlms import FAMILIES, PROMPTS, QUESTIONS

from halluscope import World
from halluscope.decoding import first_step_logits, get_method
from halluscope.models.families import FAMILIES as TRAITS

NEW = 5  # new tokens per generation
SHORT_VDGD = {"description_prompt": "Describe the image. {inst}", "description_max_new_tokens": 4}
# (id, method, arguments); "FIT" stands for VTI directions fitted on the family's model.
METHODS_TABLE = [
    ("greedy", "greedy", {}),
    ("sample", "sample", {"seed": 0, "top_k": 20}),
    ("vcd", "vcd", {}),
    ("icd", "icd", {}),
    ("m3id", "m3id", {}),
    ("vdgd", "vdgd", SHORT_VDGD),
    ("vti", "vti", {"directions": "FIT"}),
    ("vti+vcd", "vti", {"directions": "FIT", "base": "vcd"}),
]
GREEDY = [case for case in METHODS_TABLE if case[0] != "sample"]
# (family, method id) -> (words the error must contain, the arguments that work instead)
BLACK = {"no_image": "black"}
CANNOT = {
    ("paligemma", "m3id"): ("PaliGemma's processor puts image tokens in every prompt; use no_image='black'", BLACK),
    ("instructblip", "m3id"): ("InstructBLIP's processor puts image tokens in every prompt; use no_image='black'",
                               BLACK),
}
# The Hugging Face model_type of each test family, for its traits in halluscope.models.families.
MODEL_TYPES = {"qwen2vl": "qwen2_vl"}


def family_name(adapter) -> str:
    return next(name for name in FAMILIES if MODEL_TYPES.get(name, name) == adapter.model.config.model_type)


_FITTED: dict[int, tuple] = {}


def resolve(adapter, args: dict) -> dict:
    """`args` with VTI's placeholder replaced by small directions fitted on `adapter` (once per model)."""
    if args.get("directions") != "FIT":
        return args
    from halluscope.steering import FitConfig, fit_directions

    # Keyed by id and holding the adapter, so that a later module's adapter cannot reuse a freed one's id and
    # get directions fitted on another family.
    if id(adapter) not in _FITTED:
        _FITTED[id(adapter)] = adapter, fit_directions(adapter, FitConfig(n_images=3, trials=2, batch_size=6),
                                                       world=World(seed=0))
    return {**args, "directions": _FITTED[id(adapter)][1]}


def applicable(adapter, case_id: str, args: dict) -> dict:
    """The arguments to run a method with on this family: its own, or CANNOT's alternative."""
    args = resolve(adapter, args)
    entry = CANNOT.get((family_name(adapter), case_id))
    if entry is None:
        return args
    return {**args, **entry[1]} if args.get("base") is None else {**args, "base_args": entry[1]}


def is_greedy(method: str, args: dict) -> bool:
    return method != "sample" and not args.get("sample")


# ------------------------------------------------------------------------------------------ the model
def test_parts_and_image_tokens(family):
    adapter, facts = family
    modules = set(map(id, adapter.model.modules()))
    for part in (adapter.vision_tower, adapter.projector, adapter.language_model):
        assert isinstance(part, torch.nn.Module) and id(part) in modules
    assert type(adapter.vision_tower).__name__ == facts["vision_cls"]
    assert type(adapter.projector).__name__ == facts["projector_cls"]
    assert len(adapter.decoder_layers) == facts["decoder_layers"]
    assert adapter.image_token_id == adapter.tokenizer.convert_tokens_to_ids(facts["image_token"])
    ids = adapter.build_inputs(facts["images"], PROMPTS)["input_ids"]
    assert adapter.image_token_mask(ids).sum(-1).tolist() == facts["image_tokens"]
    # Every tested family has its traits written down, and its name in messages.
    assert adapter.model.config.model_type in TRAITS
    assert adapter.family.text_only_rows == all(name != family_name(adapter) for name, _ in CANNOT)


def test_left_padding_keeps_first_step_logits(family):
    """Each sample's first-step logits, as every method gets them (through `generate`'s input preparation, which
    takes the positions from the attention mask), are the same alone as in a left-padded batch. (A plain
    forward pass would differ for InstructBLIP, whose processor puts the padding between the query tokens and
    the prompt.)"""
    adapter, facts = family
    inputs = adapter.build_inputs(facts["images"], PROMPTS)
    assert (inputs["attention_mask"] == 0).any()  # padded
    batched = first_step_logits(adapter, inputs, 1)[0]
    for i in range(2):
        alone = first_step_logits(adapter, adapter.build_inputs(facts["images"][i:i + 1], PROMPTS[i:i + 1]), 1)[0]
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------- family x method
@pytest.mark.parametrize(("case_id", "method", "args"), METHODS_TABLE, ids=[c[0] for c in METHODS_TABLE])
def test_method_on_family(family, case_id, method, args):
    adapter, facts = family
    images = facts["images"]
    entry = CANNOT.get((family_name(adapter), case_id))
    if entry is not None:  # the method as asked fails, saying why and what works
        with pytest.raises(ValueError, match=entry[0].replace("(", r"\(").replace(")", r"\)")):
            adapter.generate(images, PROMPTS, method=method, max_new_tokens=NEW, **resolve(adapter, args))
        with pytest.raises(ValueError, match="no_image='black'"):
            adapter.answer_yes_no(images, QUESTIONS, method=method, **resolve(adapter, args))
    args = applicable(adapter, case_id, args)
    out = adapter.generate(images, PROMPTS, method=method, max_new_tokens=NEW, **args)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert adapter.generate(images, PROMPTS, method=method, max_new_tokens=NEW, **args) == out  # greedy or seeded
    decoder = get_method(method, **args)
    inputs = adapter.decode_inputs(decoder, images, PROMPTS)
    tokens = decoder.generate(adapter, inputs, NEW)
    assert tokens.shape[0] == 2 and 1 <= tokens.shape[1] <= NEW
    if is_greedy(method, args):  # the first token is the argmax of the method's first-step scores
        scores = decoder.first_token_scores(adapter, inputs)
        assert scores.shape == (2, adapter.model.config.get_text_config().vocab_size)
        assert torch.equal(scores.argmax(-1), tokens[:, 0])
    # answer_yes_no in both modes
    lp = adapter.yes_no_logprobs(images, QUESTIONS, method=method, **args)
    assert lp.shape == (2, 2) and (lp <= 0).all()
    assert adapter.answer_yes_no(images, QUESTIONS, mode="score", method=method, **args) == \
        ["yes" if y >= n else "no" for y, n in lp.tolist()]
    answers = adapter.answer_yes_no(images, QUESTIONS, mode="generate", method=method, **args)
    assert len(answers) == 2 and set(answers) <= {"yes", "no", "unknown"}


BATCH_PROMPTS = [*PROMPTS, "What colour is the cup?", "Describe the image in detail."]


@pytest.mark.parametrize(("case_id", "method", "args"), GREEDY, ids=[c[0] for c in GREEDY])
def test_greedy_batch_1_equals_batch_8(family, case_id, method, args):
    """Eight samples (both test images, four prompts of different lengths: left padding, and for most families
    different numbers of image tokens) decode to the same text in one batch as one by one."""
    adapter, facts = family
    args = applicable(adapter, case_id, args)
    images = [facts["images"][i % 2] for i in range(8)]
    prompts = [BATCH_PROMPTS[i % 4] for i in range(8)]
    batched = adapter.generate(images, prompts, method=method, max_new_tokens=NEW, **args)
    alone = [adapter.generate(images[i:i + 1], prompts[i:i + 1], method=method, max_new_tokens=NEW, **args)[0]
             for i in range(8)]
    assert batched == alone


# ---------------------------------------------------------------------------------- generation config
@contextmanager
def generation_config(adapter, **settings):
    saved = copy.deepcopy(adapter.model.generation_config)
    for key, value in settings.items():
        setattr(adapter.model.generation_config, key, value)
    try:
        yield
    finally:
        adapter.model.generation_config = saved


def new_tokens(adapter, images, prompts, method, **args):
    decoder = get_method(method, **args)
    return decoder.generate(adapter, adapter.decode_inputs(decoder, images, prompts), 10)


def test_generation_config_is_honoured_by_every_method(family, monkeypatch):
    """With no contrast, VCD and M3ID give exactly greedy's tokens under the model's generation config: a
    repetition penalty of 1.3, no repeated 3-grams, a minimum length and a second EOS id that stops the
    samples at different steps (so that stopped samples leave the batch); and VCD sampling gives plain
    sampling's draws under the same processors and generate's warpers."""
    from halluscope.decoding import engine

    pruned: list[int] = []
    monkeypatch.setattr(engine, "_keep_rows", lambda kw, rows, keep=engine._keep_rows: pruned.append(len(rows))
                        or keep(kw, rows))
    adapter, facts = family
    images, prompts = facts["images"], PROMPTS
    m3id = {"lam": 0.0} if adapter.family.text_only_rows else {"lam": 0.0, **BLACK}
    plain = new_tokens(adapter, images, prompts, "greedy")
    settings = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 2}
    with generation_config(adapter, **settings):
        penalised = new_tokens(adapter, images, prompts, "greedy")
    assert not torch.equal(plain, penalised), "the processors must change greedy here, or the test shows nothing"
    # A second EOS id: a token sample 0 says at its 3rd step and sample 1 not before, so they stop apart.
    stop = int(penalised[0, 2])
    eos = adapter.model.generation_config.eos_token_id
    eos = [*(eos if isinstance(eos, list) else [eos]), stop]
    with generation_config(adapter, **settings, eos_token_id=eos):
        greedy = new_tokens(adapter, images, prompts, "greedy")
        assert (greedy[0] == stop).any() and greedy.shape[1] <= 10
        assert torch.equal(new_tokens(adapter, images, prompts, "vcd", alpha=0.0, beta=0.0), greedy)
        assert torch.equal(new_tokens(adapter, images, prompts, "m3id", **m3id), greedy)
    if not (greedy[1] == stop).any() or int((greedy[1] == stop).nonzero()[0]) > 2:
        assert pruned, "sample 0 stopped first, so its rows must have left the batch"
    sampling = {"seed": 0, "temperature": 0.7, "top_k": 5}
    with generation_config(adapter, **settings | {"min_new_tokens": 10}):
        sampled = new_tokens(adapter, images, prompts, "sample", **sampling)
        assert torch.equal(new_tokens(adapter, images, prompts, "vcd", alpha=0.0, beta=0.0, sample=True, **sampling),
                           sampled)
