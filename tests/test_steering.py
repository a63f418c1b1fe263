"""VTI (steering/): the shift keeps norms, strength 0 is the base model exactly, the hooks go away,
directions are reproducible and round-trip through safetensors, and generation under VTI is the
same alone and in a batch, on the micro built-in model and on tiny random LLaVA and Qwen2-VL.
"""

from __future__ import annotations

import pytest
import torch

from halluscope import World
from halluscope.decoding import VLMAdapter
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.steering import (
    DEMO_KINDS, Directions, FitConfig, VTI, VTIConfig, WorldHallucinator, fit_directions,
    hallucinated_caption, masked_copies, principal_direction, record, steer, text_layers, vision_layers, vti,
)

from tiny_vlms import PROMPTS

PROMPT = "Describe the image in detail."
SMALL = dict(n_images=4, trials=3, batch_size=2)


@pytest.fixture(scope="module")
def micro(world):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    processor = build_processor(world)
    # Untied: a random model with tied embeddings repeats its last token, steered or not.
    model = build_model(processor, TinyConfig(vision_hidden=32, vision_layers=2, text_hidden=32, text_layers=2, heads=2,
                                              tie_embeddings=False))
    yield VLMAdapter(model, processor, name="micro-random", max_new_tokens=10)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def micro_directions(micro, world):
    return fit_directions(micro, FitConfig(**SMALL), world=world)


@pytest.fixture(scope="module")
def images(world):
    return [s.image for s in world.sample("test", 4)]


def _hook_count(adapter) -> int:
    """VTI's hooks on the model (transformers keeps hooks of its own on some layers)."""
    return sum(h.__qualname__.startswith("_steering_hook") for m in adapter.model.modules()
               for h in m._forward_hooks.values())


def _logits(adapter, images, prompts):
    return adapter.forward(images, prompts).logits


# ------------------------------------------------------------------------------------ the shift
def test_steer_keeps_each_token_norm_and_turns_it():
    torch.manual_seed(0)
    h = torch.randn(3, 5, 16) * torch.rand(3, 5, 1) * 10
    d = torch.nn.functional.normalize(torch.randn(16), dim=-1)
    out = steer(h, 0.5 * d)
    torch.testing.assert_close(out.norm(dim=-1), h.norm(dim=-1))
    cos_before = torch.nn.functional.cosine_similarity(h, d.expand_as(h), dim=-1)
    cos_after = torch.nn.functional.cosine_similarity(out, d.expand_as(h), dim=-1)
    assert (cos_after > cos_before).all()
    torch.testing.assert_close(steer(h, torch.zeros(16)), h)  # a zero shift only renormalises
    per_position = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    torch.testing.assert_close(steer(h, per_position).norm(dim=-1), h.norm(dim=-1))
    half = steer(h.to(torch.bfloat16), 0.5 * d)
    assert half.dtype == torch.bfloat16


def test_principal_direction_variants():
    torch.manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)  # one axis per layer
    shift = torch.tensor([[3.0], [-2.0]]) * axis
    spread = torch.randn(40, 1, 1) * 5  # most variance along the axis
    diffs = shift + spread * axis + 0.01 * torch.randn(40, 2, 8)
    pca = principal_direction(diffs, "pca")
    mean = principal_direction(diffs, "mean")
    torch.testing.assert_close(mean, diffs.mean(0))
    for layer in range(2):
        cos = torch.dot(pca[layer], axis[layer])
        assert abs(cos) > 0.99
        assert torch.dot(pca[layer], mean[layer]) > 0  # sign-aligned with the mean
    torch.testing.assert_close(principal_direction(diffs, "pca+mean"), pca + mean)
    with pytest.raises(ValueError, match="at least 2"):
        principal_direction(diffs[:1], "pca")


# ------------------------------------------------------------------------------------ fitting
def test_masked_copies_mask_the_stated_share():
    g = torch.Generator().manual_seed(0)
    image = {"pixel_values": torch.randn(1, 3, 64, 64)}
    out = masked_copies(image, 5, 0.75, 16, 3, g)["pixel_values"]
    fill = image["pixel_values"].mean((-2, -1), keepdim=True)
    patches = (out == fill).all(1).unfold(1, 16, 16).unfold(2, 16, 16).flatten(-2).all(-1)  # (5, 4, 4)
    assert out.shape == (5, 3, 64, 64) and patches.flatten(1).sum(1).tolist() == [12] * 5
    assert not torch.equal(patches[0], patches[1])  # each copy draws its own mask
    qwen = {"pixel_values": torch.randn(16, 3 * 2 * 14 * 14), "image_grid_thw": torch.tensor([[1, 4, 4]])}
    out = masked_copies(qwen, 3, 0.5, 14, 3, g)
    assert out["pixel_values"].shape == (48, 3 * 2 * 14 * 14) and out["image_grid_thw"].tolist() == [[1, 4, 4]] * 3
    rows = out["pixel_values"].view(3, 16, 3, -1)
    constant = (rows == rows[..., :1]).all(-1).all(-1)  # a masked row holds one value per channel
    assert constant.sum(1).tolist() == [8] * 3


def test_hallucinated_captions_differ_and_repeat(world):
    import numpy as np

    from halluscope.hallucinate import world_hallucinations

    hallucinate = WorldHallucinator(world, seed=0)
    seen = set()
    for sample in world.sample("train", 12):
        truth = World.caption(sample.truth)
        assert hallucinate(sample) == hallucinate(sample) != truth
        # A kind applies where the caption has something to change (no colour is said of "two clocks").
        applicable = {h.kind for h in world_hallucinations(world, sample.truth, kinds=DEMO_KINDS, rng=0)}
        for kind in DEMO_KINDS:
            if kind not in applicable:
                with pytest.raises(ValueError, match="no hallucination of kinds"):
                    hallucinated_caption(sample.truth, world, np.random.default_rng(0), (kind,))
                continue
            got, caption = hallucinated_caption(sample.truth, world, np.random.default_rng(0), (kind,))
            assert got == kind and caption != truth
        seen |= applicable
    assert seen == set(DEMO_KINDS)


def test_directions_are_reproducible_with_a_seed(micro, micro_directions, world):
    again = fit_directions(micro, FitConfig(**SMALL), world=world)
    assert torch.equal(again.vision, micro_directions.vision) and torch.equal(again.text, micro_directions.text)
    other = fit_directions(micro, FitConfig(**SMALL, seed=1), world=world)
    assert not torch.equal(other.vision, micro_directions.vision)
    assert micro_directions.vision.shape == (2, 17, 32)  # per position: 16 patches + CLS
    assert micro_directions.text.shape == (2, 32)
    mean = fit_directions(micro, FitConfig(**SMALL, vision_tokens="mean", method="mean"), world=world)
    assert mean.vision.shape == (2, 32) and mean.metadata["vision_tokens"] == "mean"


def test_save_load_round_trip_keeps_metadata(micro_directions, tmp_path):
    path = micro_directions.save(tmp_path / "d.safetensors")
    loaded = Directions.load(path)
    assert torch.equal(loaded.vision, micro_directions.vision) and torch.equal(loaded.text, micro_directions.text)
    assert loaded.metadata == micro_directions.metadata
    for key, value in {"model": "micro-random", "vision_layers": 2, "text_layers": 2, "n_images": 4, "seed": 0,
                       "method": "pca", "mask_ratio": 0.99, "trials": 3}.items():
        assert loaded.metadata[key] == value
    with pytest.raises(FileNotFoundError, match="steer fit"):
        Directions.load(tmp_path / "missing.safetensors")


def test_config_checks_say_how_to_fix(tmp_path):
    with pytest.raises(ValueError, match="steer fit"):
        VTIConfig()
    with pytest.raises(ValueError, match="steer fit"):
        VTIConfig(directions=tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="mask_ratio"):
        FitConfig(mask_ratio=0)
    with pytest.raises(ValueError, match="at least 2"):
        FitConfig(n_images=1)
    FitConfig(n_images=1, method="mean")
    with pytest.raises(ValueError, match="one of"):
        FitConfig(vision_tokens="all")


# ------------------------------------------------------------------------------------ applying
def test_zero_strength_is_exactly_the_base_model(micro, micro_directions, images):
    base = _logits(micro, images, [PROMPT] * 4)
    with vti(micro, micro_directions, alpha=0, beta=0):
        assert _hook_count(micro) == 0
        assert torch.equal(_logits(micro, images, [PROMPT] * 4), base)
    with vti(micro, micro_directions, alpha=0.9, beta=0):
        assert not torch.equal(_logits(micro, images, [PROMPT] * 4), base)
    with vti(micro, micro_directions, alpha=0, beta=0.9):
        assert not torch.equal(_logits(micro, images, [PROMPT] * 4), base)
    inputs = micro.build_inputs(images, [PROMPT] * 4)
    greedy = VTI(VTIConfig(directions=micro_directions, alpha=0, beta=0)).base.generate(micro, inputs, 10)
    assert torch.equal(VTI(VTIConfig(directions=micro_directions, alpha=0, beta=0)).generate(micro, inputs, 10), greedy)


@pytest.mark.parametrize("site", ["layer", "mlp"])
def test_hidden_state_norms_are_preserved(micro, micro_directions, images, site):
    sites = lambda layers: [m if site == "layer" else m.mlp for m in layers]  # noqa: E731
    modules = sites(vision_layers(micro)) + sites(text_layers(micro))
    with record(modules) as before:  # registered first: sees each output before the shift
        with vti(micro, micro_directions, alpha=2.0, beta=2.0, site=site), record(modules) as after:
            _logits(micro, images, [PROMPT] * 4)
    for b, a in zip(before, after):
        torch.testing.assert_close(a.norm(dim=-1), b.norm(dim=-1), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(a, b)


def test_hooks_are_removed_after_the_block(micro, micro_directions, images):
    assert _hook_count(micro) == 0
    with vti(micro, micro_directions, alpha=0.9, beta=0.9):
        assert _hook_count(micro) == len(vision_layers(micro)) + len(text_layers(micro))
    assert _hook_count(micro) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with vti(micro, micro_directions, alpha=0.9, beta=0.9, site="mlp"):
            raise RuntimeError("boom")
    assert _hook_count(micro) == 0
    with vti(micro, micro_directions, alpha=0.9, beta=0.9, vision_layer_ids=[-1], text_layer_ids=[0]):
        assert _hook_count(micro) == 2


def test_directions_from_another_model_are_refused(micro, micro_directions):
    wrong = Directions(vision=micro_directions.vision[:1], text=micro_directions.text, metadata={})
    with pytest.raises(ValueError, match="fit them on this one"):
        with vti(micro, wrong):
            pass
    assert _hook_count(micro) == 0


def test_batch_of_four_equals_one_at_a_time_under_vti(micro, micro_directions, images):
    prompts = [PROMPT, "Is there a fork in the image?", "Describe the image briefly.", PROMPT]
    method = VTI(VTIConfig(directions=micro_directions, alpha=3.0, beta=3.0))

    def run(ims, ps):
        return micro.tokenizer.batch_decode(method.generate(micro, micro.build_inputs(ims, ps), 10),
                                            skip_special_tokens=True)

    batched = run(images, prompts)
    assert batched == [run(images[i:i + 1], prompts[i:i + 1])[0] for i in range(4)]
    base = VTI(VTIConfig(directions=micro_directions, alpha=0, beta=0))
    assert batched != micro.tokenizer.batch_decode(base.generate(micro, micro.build_inputs(images, prompts), 10),
                                                   skip_special_tokens=True)


def test_kv_cache_gives_the_same_tokens_under_vti(micro, micro_directions, images):
    inputs = micro.build_inputs(images, [PROMPT] * 4)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=micro.tokenizer.pad_token_id)
    with vti(micro, micro_directions, alpha=3.0, beta=3.0):
        cached = micro.model.generate(**inputs, use_cache=True, **kwargs)
        uncached = micro.model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


def test_flat_arguments_go_to_the_base_method(micro_directions):
    config = VTIConfig.from_args(directions=micro_directions, beta=0.5, base="sample", temperature=0.7, seed=1)
    assert config.beta == 0.5 and config.base_args == {"temperature": 0.7, "seed": 1}
    assert VTI(config).base.config.temperature == 0.7
    with pytest.raises(ValueError, match="no argument"):
        VTI(VTIConfig.from_args(directions=micro_directions, temprature=0.7))


def test_vti_through_adapter_generate(micro, micro_directions, images, tmp_path):
    """`adapter.generate(..., method="vti", ...)`: importing halluscope.steering registered "vti"."""
    from halluscope import decoding

    assert decoding.METHODS["vti"][:2] == (VTIConfig, VTI)
    path = micro_directions.save(tmp_path / "d.safetensors")
    prompts = [PROMPT] * 4
    assert micro.generate(images, prompts, method="vti", directions=str(path), alpha=0, beta=0) == \
        micro.generate(images, prompts, method="greedy")
    sampled = [micro.generate(images, prompts, method="vti", directions=str(path), base="sample",
                              base_args={"seed": 3}) for _ in range(2)]
    assert sampled[0] == sampled[1]
    assert _hook_count(micro) == 0


def test_cli_fit_writes_directions(micro, tmp_path):
    import typer
    from typer.testing import CliRunner

    from halluscope.cli.steer import app

    folder = tmp_path / "micro"
    micro.model.save_pretrained(folder)
    micro.processor.save_pretrained(folder)
    root = typer.Typer()
    root.add_typer(app, name="steer")
    out = tmp_path / "d.safetensors"
    result = CliRunner().invoke(root, ["steer", "fit", "--model", str(folder), "--out", str(out), "--device", "cpu",
                                       "--n-images", "3", "--trials", "2", "--method", "mean"])
    assert result.exit_code == 0, result.output
    d = Directions.load(out)
    assert d.metadata["n_images"] == 3 and d.metadata["method"] == "mean" and d.vision.shape[0] == 2
    shown = CliRunner().invoke(root, ["steer", "show", str(out)])
    assert '"method": "mean"' in shown.output


# ------------------------------------------------------------------------------------ other families
@pytest.fixture(scope="module")
def vlm_directions(vlm, world):
    adapter, _ = vlm
    return fit_directions(adapter, FitConfig(**SMALL), world=world)


def test_vti_on_tiny_llava_and_qwen2vl(vlm, vlm_directions, images):
    adapter, facts = vlm
    d = vlm_directions
    assert d.vision.shape[0] == len(vision_layers(adapter)) and d.text.shape[0] == facts["decoder_layers"]
    # Qwen2-VL's token count varies per image: its directions are token means, LLaVA's per position.
    assert d.metadata["vision_tokens"] == ("mean" if "qwen" in d.metadata["model_type"] else "position")
    ims = facts["images"] + images[:2]  # Qwen2-VL: 4, 6, 4 and 4 image tokens
    prompts = PROMPTS + [PROMPT, PROMPT]
    base = _logits(adapter, ims, prompts)
    with vti(adapter, d, alpha=0, beta=0):
        assert torch.equal(_logits(adapter, ims, prompts), base)
    with vti(adapter, d, alpha=0.9, beta=0.9):
        assert not torch.equal(_logits(adapter, ims, prompts), base)
    modules = [*vision_layers(adapter), *text_layers(adapter)]
    with record(modules) as before:
        with vti(adapter, d, alpha=2.0, beta=2.0), record(modules) as after:
            _logits(adapter, ims, prompts)
    for b, a in zip(before, after):
        torch.testing.assert_close(a.norm(dim=-1), b.norm(dim=-1), rtol=1e-5, atol=1e-5)
    assert _hook_count(adapter) == 0
    if d.metadata["vision_tokens"] == "mean":
        with pytest.raises(ValueError, match="vision_tokens='mean'"):
            fit_directions(adapter, FitConfig(**SMALL, vision_tokens="position"), world=World(0))


def test_vti_batch_invariance_on_tiny_llava_and_qwen2vl(vlm, vlm_directions, images):
    adapter, facts = vlm
    ims = facts["images"] + images[:2]
    prompts = PROMPTS + [PROMPT, PROMPT]
    method = VTI(VTIConfig(directions=vlm_directions, alpha=3.0, beta=3.0))

    def run(i, j):
        new = method.generate(adapter, adapter.build_inputs(ims[i:j], prompts[i:j]), 6)
        return adapter.tokenizer.batch_decode(new, skip_special_tokens=True)

    assert run(0, 4) == [run(i, i + 1)[0] for i in range(4)]


def test_the_comparison_fits_directions_again_for_another_model(micro, micro_directions, world, tmp_path):
    from halluscope.compare import run_methods
    from halluscope.steering import Directions

    stale = Directions(micro_directions.vision, micro_directions.text, dict(micro_directions.metadata, model="other"))
    stale.save(tmp_path / "directions.safetensors")
    run_methods(micro, world, ["vti"], tmp_path, pope_images=4, chair_images=2, batch_size=4, progress=False)
    assert Directions.load(tmp_path / "directions.safetensors").metadata["model"] == micro.name
