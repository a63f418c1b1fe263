"""Decoding methods and the multi-branch engine.

One table (`CASES`) runs every registered method through the same contract tests, peft-style,
on the micro built-in model (a random `build_model` from tiny.py) and on the tiny random LLaVA
and Qwen2-VL of `tiny_vlms.py` (the `vlm` fixture). The contrast formulas are checked against
references written here from the papers' formulas on random logits.
"""

from __future__ import annotations

import copy
import inspect
import math
from contextlib import contextmanager
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F
from micro_eval import micro_adapter
from tiny_vlms import PROMPTS

from halluscope import World, decoding
from halluscope.decoding import (
    METHODS,
    Branch,
    ContrastConfig,
    DecodeInputs,
    DecodingMethod,
    MethodConfig,
    SamplingConfig,
    build_branches,
    decode,
    first_step_logits,
    get_method,
    m3id_scores,
    vcd_scores,
    vdgd_scores,
)
from halluscope.decoding.engine import eos_ids
from halluscope.decoding.vcd import add_diffusion_noise, alphas_cumprod
from halluscope.decoding.vdgd import description_logprobs

NEW = 6  # new tokens per test generation
SHORT_VDGD = {"description_prompt": "Describe the image. {inst}", "description_max_new_tokens": 5}

# (method, arguments, a bad argument and a word its error message must contain)
CASES = [
    ("greedy", {}, None),
    ("sample", {"seed": 0}, ({"temperature": 0}, "temperature")),
    ("vcd", {}, ({"beta": 2}, "beta")),
    ("vcd", {"sample": True, "seed": 0, "top_p": 0.9}, ({"noise_step": 1000}, "noise_step")),
    ("icd", {}, ({"alpha": -1}, "alpha")),
    ("icd", {"sample": True, "seed": 1}, ({"disturbance": " "}, "disturbance")),
    ("m3id", {}, ({"no_image": "grey"}, "no_image")),
    ("m3id", {"sample": True, "seed": 2, "top_k": 5}, ({"lam": -0.1}, "lam")),
    ("vdgd", SHORT_VDGD, ({"prefix_template": "{prompt}"}, "description")),
    ("vdgd", {**SHORT_VDGD, "sample": True, "seed": 3}, ({"description_max_new_tokens": 0}, "description_max")),
    # VTI's directions are fitted on the model under test (FIT is replaced in check_contract).
    ("vti", {"directions": "FIT"}, ({"site": "attention"}, "site")),
    ("vti", {"directions": "FIT", "base": "vcd", "alpha": 2.0, "beta": 2.0}, ({"base": "vti"}, "base")),
]
IDS = [f"{m}-{'sample' if a.get('sample') or m == 'sample' else 'greedy'}" for m, a, _ in CASES]


def is_greedy(method: str, args: dict) -> bool:
    return method != "sample" and not args.get("sample")


@pytest.fixture(scope="module")
def micro(world):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield micro_adapter(world)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def micro_images(world):
    return [s.image for s in world.sample("test", 16)]


MICRO_PROMPTS = ["describe the image in detail .", "is there a cup in the image ?"]


def micro_prompts(n: int) -> list[str]:
    return [MICRO_PROMPTS[i % 2] for i in range(n)]


# ------------------------------------------------------------------------------- the contract
def test_every_registered_method_is_in_the_table():
    assert {m for m, _, _ in CASES} == set(METHODS)
    for method, args, _ in CASES:
        if args.get("directions") != "FIT":  # VTI's are checked with fitted directions below
            get_method(method, **args)


def test_every_method_implements_the_protocol():
    generate = ["self", "adapter", "inputs", "max_new_tokens", "min_new_tokens"]
    for name in METHODS:
        config_cls, impl, _ = METHODS[name]
        assert issubclass(impl, DecodingMethod) and not inspect.isabstract(impl), name
        assert issubclass(config_cls, MethodConfig) and issubclass(config_cls, impl.config_cls), name
        assert list(inspect.signature(impl.generate).parameters) == generate, name
        assert inspect.signature(impl.generate).parameters["min_new_tokens"].default == 0, name
        assert list(inspect.signature(impl.first_token_scores).parameters) == ["self", "adapter", "inputs"], name
    with pytest.raises(TypeError, match="DecodingMethod"):
        decoding.register_method("broken", SamplingConfig, object)


_FITTED: dict[int, object] = {}


def with_directions(adapter, args: dict) -> dict:
    """`args` with VTI's placeholder directions replaced by small ones fitted on `adapter`."""
    if args.get("directions") != "FIT":
        return args
    from halluscope.steering import FitConfig, fit_directions

    if id(adapter) not in _FITTED:
        config = FitConfig(n_images=3, trials=2, batch_size=4)
        _FITTED[id(adapter)] = fit_directions(adapter, config, world=World(seed=0))
    return {**args, "directions": _FITTED[id(adapter)]}


def check_contract(adapter, images, prompts, method, args, bad):
    args = with_directions(adapter, args)
    # Strings, one per sample, and the same ones again (greedy, or sampling with a seed).
    out = adapter.generate(images, prompts, method=method, max_new_tokens=NEW, **args)
    assert len(out) == len(images) and all(isinstance(t, str) for t in out)
    assert adapter.generate(images, prompts, method=method, max_new_tokens=NEW, **args) == out
    # At most max_new_tokens new tokens.
    decoder = get_method(method, **args)
    inputs = adapter.decode_inputs(decoder, images, prompts)
    assert isinstance(decoder.builds_own_inputs, bool) and (len(inputs) == 0) == decoder.builds_own_inputs
    tokens = decoder.generate(adapter, inputs, NEW)
    assert tokens.shape[0] == len(images) and tokens.shape[1] <= NEW
    # min_new_tokens, in the protocol's signature for every method: no EOS before it.
    eos = torch.tensor(eos_ids(adapter))
    assert not torch.isin(decoder.generate(adapter, inputs, NEW, min_new_tokens=NEW)[:, :NEW], eos).any()
    # First-token scores: (B, V), and for greedy methods the first generated token is their argmax.
    scores = decoder.first_token_scores(adapter, inputs)
    assert scores.shape == (len(images), adapter.model.config.get_text_config().vocab_size)
    if is_greedy(method, args):
        assert torch.equal(scores.argmax(-1), tokens[:, 0])
    lp = adapter.yes_no_logprobs(images, prompts, method=method, **args)
    assert lp.shape == (len(images), 2) and (lp <= 0).all()
    # Invalid settings fail at construction with a message naming the setting.
    if bad is not None:
        bad_args, word = bad
        with pytest.raises(ValueError, match=word):
            get_method(method, **{**args, **bad_args})
    with pytest.raises(ValueError, match="no argument"):
        get_method(method, **{**args, "not_an_argument": 1})


@pytest.mark.parametrize(("method", "args", "bad"), CASES, ids=IDS)
def test_contract_micro(micro, micro_images, method, args, bad):
    check_contract(micro, micro_images[:3], micro_prompts(3), method, args, bad)


@pytest.mark.parametrize(("method", "args", "bad"), CASES, ids=IDS)
def test_contract_tiny_vlms(vlm, method, args, bad):
    adapter, facts = vlm
    check_contract(adapter, facts["images"], PROMPTS, method, args, bad)


@pytest.mark.parametrize(("method", "args", "bad"), [c for c in CASES if is_greedy(c[0], c[1])],
                         ids=[i for i, c in zip(IDS, CASES) if is_greedy(c[0], c[1])])
def test_greedy_batch_1_equals_batch_16(micro, micro_images, method, args, bad):
    args = with_directions(micro, args)
    prompts = micro_prompts(16)
    batched = micro.generate(micro_images, prompts, method=method, max_new_tokens=NEW, **args)
    alone = [micro.generate(micro_images[i:i + 1], prompts[i:i + 1], method=method, max_new_tokens=NEW, **args)[0]
             for i in range(16)]
    assert batched == alone


@pytest.mark.parametrize("method", ["vcd", "icd", "m3id"])
def test_greedy_alone_equals_batch_tiny_vlms(vlm, method):
    adapter, facts = vlm
    batched = adapter.generate(facts["images"], PROMPTS, method=method, max_new_tokens=NEW)
    alone = [adapter.generate(facts["images"][i:i + 1], PROMPTS[i:i + 1], method=method, max_new_tokens=NEW)[0]
             for i in range(2)]
    assert batched == alone


# ------------------------------------------------------------------------------- invariants
def test_vcd_alpha_zero_is_the_base_model(micro, micro_images, vlm):
    adapter, facts = vlm
    for model, images, prompts in ((micro, micro_images[:4], micro_prompts(4)), (adapter, facts["images"], PROMPTS)):
        greedy = model.generate(images, prompts, max_new_tokens=NEW)
        assert model.generate(images, prompts, method="vcd", alpha=0.0, max_new_tokens=NEW) == greedy
        assert torch.allclose(model.yes_no_logprobs(images, prompts, method="vcd", alpha=0.0, beta=0.0),
                              model.yes_no_logprobs(images, prompts), atol=1e-5)


@contextmanager
def generation_config(adapter, **settings):
    """The model's generation config with `settings`, restored afterwards."""
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


def test_greedy_equals_vcd_and_m3id_without_contrast_under_a_generation_config(micro, micro_images, vlm):
    """The engine applies the processors and stopping criteria that `generate` builds from the model's
    generation config, as transformers' own search does: with no contrast, VCD and M3ID give the same
    tokens as greedy under a repetition penalty, no repeated 3-grams, a list of EOS ids and a minimum
    length, and VCD the same draws as plain sampling. (beta = 0: VCD's plausibility cut comes before the
    processors, as in VCD's code, so with beta > 0 a penalty could lift a token the cut had removed.)"""
    adapter, facts = vlm
    for model, images, prompts in ((micro, micro_images[:5], micro_prompts(5)), (adapter, facts["images"], PROMPTS)):
        plain = new_tokens(model, images, prompts, "greedy")
        with generation_config(model, repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=2):
            penalised = new_tokens(model, images, prompts, "greedy")
            # A second EOS id: a token the penalised greedy output of sample 0 says at its 3rd step, so that
            # samples stop at different steps (and leave the batch) where EOS alone would not stop them.
            stop = int(penalised[0, 2])
            eos = [model.model.generation_config.eos_token_id, stop]
        assert not torch.equal(plain, penalised), "the processors must change greedy here, or the test shows nothing"
        with generation_config(model, repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=2,
                               eos_token_id=eos):
            greedy = new_tokens(model, images, prompts, "greedy")
            assert (greedy == stop).any(dim=1)[0] and greedy.shape[1] <= 10
            assert torch.equal(new_tokens(model, images, prompts, "vcd", alpha=0.0, beta=0.0), greedy)
            assert torch.equal(new_tokens(model, images, prompts, "m3id", lam=0.0), greedy)
        # Sampling too: generate's warpers (temperature, top-k) run after the same processors, on the same
        # draws while every sample decodes (no EOS before the last step here).
        sampling = {"seed": 0, "temperature": 0.7, "top_k": 5}
        with generation_config(model, repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=10):
            sampled = new_tokens(model, images, prompts, "sample", **sampling)
            assert not torch.equal(sampled, penalised)
            assert torch.equal(new_tokens(model, images, prompts, "vcd", alpha=0.0, beta=0.0, sample=True, **sampling),
                               sampled)


def test_beta_one_is_the_argmax(micro, micro_images, vlm):
    adapter, facts = vlm
    for model, images, prompts in ((micro, micro_images[:4], micro_prompts(4)), (adapter, facts["images"], PROMPTS)):
        greedy = model.generate(images, prompts, max_new_tokens=NEW)
        for method in ("vcd", "icd"):
            assert model.generate(images, prompts, method=method, alpha=3.0, beta=1.0, max_new_tokens=NEW) == greedy
    logits = torch.randn(5, 50)
    s = vcd_scores(logits, torch.randn(5, 50), alpha=2.0, beta=1.0)
    assert torch.isfinite(s).sum(-1).tolist() == [1] * 5 and torch.equal(s.argmax(-1), logits.argmax(-1))


def test_plain_dict_is_refused_with_a_fix():
    with pytest.raises(TypeError, match="adapter.generate"):
        get_method("vcd").generate(None, {"input_ids": torch.zeros(1, 1)}, 4)


# ------------------------------------------------------------------------------- contrast math
def test_vcd_matches_the_formula():
    torch.manual_seed(0)
    clean, noisy = torch.randn(4, 100) * 3, torch.randn(4, 100) * 3
    for alpha, beta in ((1.0, 0.1), (0.5, 0.3), (2.0, 0.0)):
        p = clean.softmax(-1)
        keep = p >= beta * p.max(-1, keepdim=True).values
        expected = torch.where(keep, (1 + alpha) * clean - alpha * noisy, torch.tensor(-math.inf))
        got = vcd_scores(clean, noisy, alpha=alpha, beta=beta)
        assert torch.equal(torch.isinf(got), ~keep)
        torch.testing.assert_close(got[keep], expected[keep])


def test_vcd_noise_schedule_and_step():
    abar = alphas_cumprod()
    betas = torch.sigmoid(torch.linspace(-6, 6, 1000)) * (0.005 - 1e-5) + 1e-5  # VCD's add_diffusion_noise
    torch.testing.assert_close(abar, torch.cumprod(1 - betas, 0))
    x, eps = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(add_diffusion_noise(x, 500, eps), abar[500].sqrt() * x + (1 - abar[500]).sqrt() * eps)
    assert 0.7 < abar[500] < 0.8  # at t = 500: sqrt(abar) = 0.86 of the image, 0.50 of noise


def test_m3id_matches_the_formula():
    torch.manual_seed(1)
    cond, uncond = torch.randn(3, 60) * 2, torch.randn(3, 60) * 2
    for t in (1, 10, 100):
        gamma = math.exp(-0.02 * t)
        p_c, p_u = cond.softmax(-1), uncond.softmax(-1)
        # p* ∝ p_c^(1/gamma) / p_u^((1-gamma)/gamma)
        expected = (p_c.log() / gamma - (1 - gamma) / gamma * p_u.log()).softmax(-1)
        torch.testing.assert_close(m3id_scores(cond, uncond, t, 0.02).softmax(-1), expected, atol=1e-5, rtol=1e-4)
    # On logits, lambda = 0 is the model's own scores to the bit (what the logits processors then see).
    assert torch.equal(m3id_scores(cond, uncond, 5, lam=0.0), cond)


def reference_vdgd(logits, desc_logits, beta, reduction):
    """VDGD as its code writes it: for each plausible candidate k, -min_j kl_div(log q_j, e_k)."""
    log_q = desc_logits.log_softmax(-1)
    cutoff = math.log(beta) + logits.max()
    out = torch.full_like(logits, -math.inf)
    for k in (logits >= cutoff).nonzero().flatten().tolist():
        e_k = torch.zeros_like(logits)
        e_k[k] = 1.0
        out[k] = -min(F.kl_div(log_q[j], e_k, reduction=reduction).item() for j in range(len(log_q)))
    return out


def test_vdgd_paper_formula_vs_reference_code():
    torch.manual_seed(2)
    vocab, steps = 4000, 7  # a small real vocabulary; LLaVA's has 32000
    logits, desc = torch.randn(vocab) * 2, torch.randn(steps, vocab) * 3
    table = description_logprobs(desc[None], torch.ones(1, steps, dtype=torch.bool))
    paper = vdgd_scores(logits[None], table, beta=0.1)[0]
    code = vdgd_scores(logits[None], table, beta=0.1, vocab_mean=True)[0]
    # The paper: -min_j KL(e_k || q_j) = log max_j q_j(k); the code's `batchmean` divides by V.
    torch.testing.assert_close(paper, reference_vdgd(logits, desc, 0.1, "sum"))
    torch.testing.assert_close(code, reference_vdgd(logits, desc, 0.1, "batchmean"))
    candidates = torch.isfinite(paper)
    assert candidates.sum() >= 3
    assert paper.argmax() == code.argmax()  # greedy picks the same token either way
    p_paper, p_code = paper.softmax(-1)[candidates], code.softmax(-1)[candidates]
    # Sampling: the paper's distribution is max_j q_j(k), renormalised over the candidates...
    expected = desc.softmax(-1).amax(0)[candidates]
    torch.testing.assert_close(p_paper, expected / expected.sum())
    assert p_paper.max() / p_paper.min() > 2
    # ...the code's is within 1 % of uniform: the description barely matters.
    assert p_code.max() / p_code.min() < 1.01


def test_description_steps_after_eos_do_not_count():
    logits = torch.randn(2, 3, 10)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    table = description_logprobs(logits, valid)
    torch.testing.assert_close(table[1], logits[1, 0].log_softmax(-1))
    torch.testing.assert_close(table[0], logits[0].log_softmax(-1).amax(0))


def greedy_scores(logits, step, samples):
    return logits[0]


def test_vdgd_describe_is_description_logprobs_of_its_own_steps(vlm):
    """`VDGD.describe` keeps a running max; it must equal `description_logprobs` over the description's
    steps, each sample's up to and including its EOS, when descriptions stop before their last step."""
    adapter, facts = vlm
    images, prompts = facts["images"], PROMPTS
    decoder = get_method("vdgd", description_prompt="Describe the image. {inst}", description_max_new_tokens=8)
    requests = [f"Describe the image. {p}" for p in prompts]
    plain = decode(adapter, build_branches(adapter, [Branch(requests, images)]), 1, greedy_scores, 8).tokens
    # A second EOS id: a token of sample 0's description that sample 1's does not say, so they stop apart.
    stops = [int(t) for t in plain[0, 1:] if t not in plain[1]]
    if not stops:
        pytest.skip("this random model describes both images with the same tokens")
    stop = stops[0]
    with generation_config(adapter, eos_token_id=[adapter.model.generation_config.eos_token_id, stop]):
        description = decoder.describe(adapter, images, prompts)
        run = decode(adapter, build_branches(adapter, [Branch(requests, images)]), 1, greedy_scores, 8,
                     keep_logits=True)
    steps = torch.stack(run.logits)[:, 0].transpose(0, 1)  # (B, J, V), NaN after a sample's EOS
    valid = ~steps.isnan().any(-1)
    assert not valid.all()  # the two descriptions have different lengths
    torch.testing.assert_close(description.logprobs, description_logprobs(steps, valid), atol=0, rtol=0)
    texts = adapter.tokenizer.batch_decode(run.tokens, skip_special_tokens=True)
    assert description.texts == [t.strip() for t in texts]


# ------------------------------------------------------------------------------- the engine
def stacked(adapter, images, prompts, method):
    decoder = get_method(method)
    return build_branches(adapter, decoder.branches(adapter, images, prompts))


@pytest.mark.parametrize("method", ["vcd", "icd", "m3id"])
def test_engine_cached_logits_equal_uncached(vlm, micro, micro_images, method):
    adapter, facts = vlm
    for model, images, prompts in ((adapter, facts["images"], PROMPTS), (micro, micro_images[:3], micro_prompts(3))):
        inputs = stacked(model, images, prompts, method)
        # A random model may emit image tokens, which a full rerun would read as image slots.
        ids = [i for i in (model.image_token_id, getattr(model.model.config, "video_token_id", None)) if i is not None]
        banned = torch.tensor(ids)

        def greedy_first(logits, step, samples, banned=banned):
            return logits[0].index_fill(-1, banned, -math.inf)

        cached = decode(model, inputs, 2, greedy_first, NEW, keep_logits=True)
        uncached = decode(model, inputs, 2, greedy_first, NEW, keep_logits=True, use_cache=False)
        assert torch.equal(cached.tokens, uncached.tokens)
        for a, b in zip(cached.logits, uncached.logits, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("method", ["icd", "m3id"])
def test_each_branch_in_the_stack_equals_its_inputs_alone(vlm, method):
    """Branches of different lengths get their own left padding and positions in the stack."""
    adapter, facts = vlm
    decoder = get_method(method)
    branches = decoder.branches(adapter, facts["images"], PROMPTS)
    both = first_step_logits(adapter, build_branches(adapter, branches), 2)
    for k, branch in enumerate(branches):
        alone = first_step_logits(adapter, build_branches(adapter, [branch]), 1)[0]
        torch.testing.assert_close(both[k], alone, atol=1e-4, rtol=1e-4)
    # The first-step logits are the model's own: the same as a plain forward pass on the clean inputs.
    plain = adapter.model(**adapter.build_inputs(facts["images"], PROMPTS)).logits[:, -1].float()
    torch.testing.assert_close(both[0], plain, atol=1e-4, rtol=1e-4)


def test_engine_single_branch_is_hf_greedy(vlm, micro, micro_images):
    adapter, facts = vlm
    for model, images, prompts in ((adapter, facts["images"], PROMPTS), (micro, micro_images[:4], micro_prompts(4))):
        inputs = model.build_inputs(images, prompts)
        ours = decode(model, inputs, 1, lambda logits, step, samples: logits[0], NEW).tokens
        hf = model.model.generate(**inputs, max_new_tokens=NEW, do_sample=False,
                                  pad_token_id=model.tokenizer.pad_token_id)
        hf = hf[:, inputs["input_ids"].shape[1]:]
        assert torch.equal(ours, hf[:, :ours.shape[1]])


def test_engine_stops_each_row_at_eos_and_pads(micro, micro_images):
    eos, pad = eos_ids(micro)[0], micro.tokenizer.pad_token_id
    inputs = micro.build_inputs(micro_images[:2], micro_prompts(2))

    def force(logits, step, samples):  # sample 0 says EOS at step 1, sample 1 never
        scores = logits[0].clone()
        scores[:, eos] = -math.inf
        scores[samples == 0, eos] = math.inf if step == 1 else -math.inf
        return scores

    for prune in (True, False):
        tokens = decode(micro, inputs, 1, force, 5, prune=prune).tokens
        assert tokens.shape == (2, 5)
        assert tokens[0, 1] == eos and (tokens[0, 2:] == pad).all()
        assert not torch.isin(tokens[1], torch.tensor([eos])).any()

    def all_stop(logits, step, samples):
        scores = torch.full_like(logits[0], -math.inf)
        scores[:, eos] = 0.0
        return scores

    assert decode(micro, inputs, 1, all_stop, 5).tokens.shape == (2, 1)  # stops when every row is done


@pytest.mark.parametrize("method", ["vcd", "m3id"])
def test_stopped_samples_leave_the_batch_without_changing_the_others(vlm, micro, micro_images, method, monkeypatch):
    """Samples stopping at different steps: with their rows dropped from the batch and the KV
    cache, the others get the same logits and tokens as when every row stays."""
    from halluscope.decoding import engine

    kept_rows: list[int] = []  # rows left after each pruning: it must happen (a renamed cache kwarg once hid it)
    monkeypatch.setattr(engine, "_keep_rows", lambda kw, rows, keep=engine._keep_rows: kept_rows.append(len(rows))
                        or keep(kw, rows))
    adapter, facts = vlm
    for model, images, prompts in ((adapter, facts["images"], PROMPTS), (micro, micro_images[:5], micro_prompts(5))):
        inputs = stacked(model, images, prompts, method)
        eos = eos_ids(model)[0]

        def stop_in_turn(logits, step, samples, eos=eos):  # sample i says EOS at step i + 1
            scores = get_method(method).scores(logits, step, samples).clone()
            scores[:, eos] = -math.inf
            scores[samples == step - 1, eos] = math.inf
            return scores

        kept_rows.clear()
        pruned = decode(model, inputs, 2, stop_in_turn, len(images) + 2, keep_logits=True)
        assert kept_rows == [2 * (len(images) - i) for i in range(1, len(images))]
        kept = decode(model, inputs, 2, stop_in_turn, len(images) + 2, keep_logits=True, prune=False)
        assert torch.equal(pruned.tokens, kept.tokens)
        assert [int((row == eos).nonzero()[0]) for row in pruned.tokens] == [i + 1 for i in range(len(images))]
        for a, b in zip(pruned.logits, kept.logits, strict=True):
            live = ~a.isnan()
            assert live.any()
            torch.testing.assert_close(a[live], b[live], atol=1e-4, rtol=1e-4)


def test_sampling_is_seeded_and_differs_from_greedy(micro, micro_images):
    images, prompts = micro_images[:4], micro_prompts(4)
    runs = [micro.generate(images, prompts, method="vcd", sample=True, seed=s, max_new_tokens=10) for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_vcd_noise_depends_on_the_image_not_the_batch(micro, micro_images):
    decoder = get_method("vcd")
    both = build_branches(micro, decoder.branches(micro, micro_images[:2], micro_prompts(2)))
    one = build_branches(micro, decoder.branches(micro, micro_images[1:2], micro_prompts(2)[1:]))
    pv = both["pixel_values"]  # rows: clean 0, clean 1, noised 0, noised 1
    assert torch.equal(pv[3], one["pixel_values"][1])
    assert not torch.allclose(pv[2] - pv[0], pv[3] - pv[1])  # another image, other noise
    abar = alphas_cumprod()[500]
    residual = (pv[2] - abar.sqrt() * pv[0]) / (1 - abar).sqrt()
    assert abs(residual.mean()) < 0.1 and abs(residual.std() - 1) < 0.1


def test_qwen_noise_is_the_same_on_both_temporal_copies(vlm):
    adapter, facts = vlm
    ip = adapter.processor.image_processor
    if not hasattr(ip, "temporal_patch_size"):
        pytest.skip("not a Qwen2-VL-style processor")
    inputs = stacked(adapter, facts["images"], PROMPTS, "vcd")
    t, p = ip.temporal_patch_size, ip.patch_size
    rows = inputs["pixel_values"].shape[0] // 2
    noised = inputs["pixel_values"][rows:].reshape(rows, 3, t, p * p)
    torch.testing.assert_close(noised[:, :, 0], noised[:, :, 1])


# ------------------------------------------------------------------------------- interfaces
PAPERS = {"vcd": ("Leng", "CVPR 2024"), "icd": ("Wang", "Findings of ACL 2024"), "m3id": ("Favero", "CVPR 2024"),
          "vdgd": ("Ghosh", "ICLR 2025"), "vti": ("Liu", "ICLR 2025")}


def test_method_help_and_paper_defaults():
    vcd_help = decoding.method_help("vcd")
    assert vcd_help["alpha"]["default"] == 1.0 and "contrast strength" in vcd_help["alpha"]["help"]
    assert decoding.method_help("sample")["sample"]["default"] is True  # the name's preset
    assert decoding.method_help("greedy")["sample"]["default"] is False
    defaults = {m: {f.name: f.default for f in fields(METHODS[m][0])} for m in ("vcd", "icd", "m3id", "vdgd")}
    assert (defaults["vcd"]["alpha"], defaults["vcd"]["beta"], defaults["vcd"]["noise_step"]) == (1.0, 0.1, 500)
    assert (defaults["icd"]["alpha"], defaults["icd"]["beta"]) == (1.0, 0.1)
    assert "confused object detector" in defaults["icd"]["disturbance"]
    assert defaults["m3id"]["lam"] == 0.02 and defaults["vdgd"]["beta"] == 0.1
    for m in METHODS:
        assert all(f.metadata.get("help") for f in fields(METHODS[m][0])), m
        paper = decoding.method_help(m)["_paper"]
        if m in ("greedy", "sample"):
            assert paper == {}
            continue
        author, venue = PAPERS[m]
        assert set(paper) == {"title", "authors", "venue", "url"} and author in paper["authors"].split(",")[0]
        assert paper["venue"] == venue and paper["url"].startswith("https://arxiv.org/abs/"), m


def test_world_pope_score_mode_applies_the_method(micro, world):
    from halluscope.tasks.world import WorldPOPE

    bench = WorldPOPE(world, "adversarial", n_images=2)
    batch = bench.samples()[:6]
    images, texts = [s["image"] for s in batch], [s["text"] for s in batch]
    for method, args in (("greedy", {}), ("vcd", {"alpha": 2.0}), ("m3id", {})):
        records = bench.predict(micro, batch, method, args)
        lp = micro.yes_no_logprobs(images, texts, method=method, **args)
        assert [r["logprob_yes_no"] for r in records] == lp.tolist()
    assert [r["prediction"] for r in bench.predict(micro, batch, "vcd", {"alpha": 0.0, "beta": 0.0})] == \
        [r["prediction"] for r in bench.predict(micro, batch, "greedy", {})]


def test_cli_eval_with_method_args(micro, tmp_path):
    from typer.testing import CliRunner

    from halluscope.cli import app

    folder = tmp_path / "micro"
    micro.model.save_pretrained(folder)
    micro.processor.save_pretrained(folder)
    common = ["eval", "--model", str(folder), "--benchmark", "world-pope:random", "--n-images", "2",
              "--batch-size", "6"]
    result = CliRunner().invoke(app, [*common, "--method", "vcd", "--method-args", "alpha=1,beta=0.1",
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert '"method": "vcd"' in result.output
    bad = CliRunner().invoke(app, [*common, "--method", "vcd", "--method-args", "beta=2",
                                   "--output", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "beta" in bad.output


def test_sampling_config_is_shared():
    for m in ("greedy", "sample", "vcd", "icd", "m3id", "vdgd"):
        assert issubclass(METHODS[m][0], SamplingConfig)
    for m in ("vcd", "icd"):
        assert issubclass(METHODS[m][0], ContrastConfig)
    assert get_method("sample").config == SamplingConfig(sample=True)
    assert get_method("greedy").config == SamplingConfig()
    assert get_method("sample", sample=False).config.sample is False  # the caller's arguments win over the preset
    assert isinstance(get_method("icd", sample=True, temperature=0.5).config, SamplingConfig)
    DecodeInputs({}, [], [])  # constructible without tensors
    Branch(["x"], None)


def test_old_names_still_work_with_a_warning(micro, micro_images):
    with pytest.warns(DeprecationWarning, match="SamplingConfig"):
        assert decoding.SampleConfig(temperature=0.5) == SamplingConfig(sample=True, temperature=0.5)
    with pytest.warns(DeprecationWarning, match="SamplingConfig"):
        assert decoding.GreedyConfig() == SamplingConfig()
    with pytest.warns(DeprecationWarning, match="first-token"):
        assert decoding.scores_first_token("vcd") is True
    decoder = get_method("greedy")
    with pytest.warns(DeprecationWarning, match="decode_inputs"):
        old = micro._decode_inputs(decoder, micro_images[:2], micro_prompts(2))
    assert torch.equal(old["input_ids"], micro.decode_inputs(decoder, micro_images[:2], micro_prompts(2))["input_ids"])


def test_decoding_loads_no_steering():
    """`import halluscope.decoding` loads neither steering nor the modules above it, and still knows "vti"
    (by the name of the package that registers it, imported on first use)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, halluscope.decoding as d; loaded = sorted(sys.modules); known = 'vti' in d.METHODS;"
            " d.METHODS['vti']; print(json.dumps([loaded, known, 'halluscope.steering' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, known, registered = json.loads(out.stdout.splitlines()[-1])
    above = ("steering", "hallucinate", "training", "world", "zoo", "tasks", "runner", "report", "cli")
    assert not [m for m in loaded if m.startswith("halluscope.") and m.split(".")[1] in above]
    assert known and registered
