"""`load_model` + `VLMAdapter` on tiny random VLMs of two families, built from configs offline,
saved with `save_pretrained` and loaded back through `halluscope.load_model(folder)`:

- LLaVA (CLIP tower, MLP projector, Llama decoder) around the built-in processor, but a different
  config from the built-in model's (3-layer tower read at `vision_feature_layer=-2`);
- Qwen2-VL (its own ViT, patch merger, M-RoPE decoder) with a byte-level BPE tokenizer trained here
  on a few sentences, Qwen2-VL's special tokens and a Qwen-style chat template. Its number of image
  tokens depends on the image size, so the two test images give different counts.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

import halluscope

PROMPTS = ["Is there a fork in the image?", "What is in the image?"]  # different lengths: left padding
QUESTIONS = ["Is there a fork in the image?", "Is there a red cup?"]


# ---------------------------------------------------------------------------------------- LLaVA
def _build_llava(folder) -> dict:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from halluscope import World
    from halluscope.models.tiny import IMAGE_TOKEN, PATCH_SIZE, build_processor
    from halluscope.world.core import IMAGE_SIZE

    processor = build_processor(World(seed=0))
    tok = processor.tokenizer
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    n_image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2  # "default" strategy drops CLS: one token per patch
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=n_image_tokens,
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)) for _ in range(2)]
    return {"images": images, "image_tokens": [n_image_tokens, n_image_tokens], "decoder_layers": 2,
            "image_token": IMAGE_TOKEN, "vision_cls": "CLIPVisionModel", "projector_cls": "LlavaMultiModalProjector"}


# ------------------------------------------------------------------------------------- Qwen2-VL
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH, MERGE = 14, 2


def _qwen_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [*PROMPTS, *QUESTIONS, "user assistant system yes no Yes No",
              halluscope.models.YES_NO_SUFFIX, "A fork and a red cup on a table."] * 4
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=QWEN_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def _qwen_processor_class():
    """Qwen2VLProcessor, or, where torchvision is missing, a subclass without the video processor.

    In this transformers version Qwen2VLProcessor insists on a video processor (its argument check
    looks up `VideoProcessorMixin`, which transformers exports only with torchvision), and
    `AutoProcessor.from_pretrained` loads one through `AutoVideoProcessor`, which needs torchvision
    too. Without torchvision a real Qwen2-VL folder therefore cannot be loaded at all; the adapter
    itself never touches video, so here the subclass stands in and is registered with AutoProcessor
    for the module's duration (undone by the fixture)."""
    from transformers import Qwen2VLProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return Qwen2VLProcessor, False

    class Qwen2VLProcessorNoVideo(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return Qwen2VLProcessorNoVideo, True


def _build_qwen2vl(folder) -> dict:
    from transformers import (AutoProcessor, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessorPil)

    tok = _qwen_tokenizer()
    # Images stay at their size (multiples of PATCH * MERGE = 28) up to 56 x 84 pixels.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 84, patch_size=PATCH,
                                               temporal_patch_size=2, merge_size=MERGE)
    processor_cls, registered = _qwen_processor_class()
    if registered:
        AutoProcessor.register(Qwen2VLConfig, processor_cls, exist_ok=True)
        processor = processor_cls(image_processor=image_processor, tokenizer=tok, chat_template=QWEN_TEMPLATE)
    else:
        from transformers import Qwen2VLVideoProcessor

        processor = processor_cls(image_processor=image_processor, tokenizer=tok,
                                  video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         # M-RoPE splits head_dim / 2 = 8 frequencies over (time, height, width)
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=PATCH,
                           spatial_merge_size=MERGE, temporal_patch_size=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    rng = np.random.default_rng(1)
    shapes = [(56, 56), (84, 56)]  # (height, width): 4x4 and 6x4 patches
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]
    expected = [(h // PATCH) * (w // PATCH) // MERGE**2 for h, w in shapes]  # 4 and 6
    return {"images": images, "image_tokens": expected, "decoder_layers": 2, "image_token": "<|image_pad|>",
            "vision_cls": "Qwen2VisionTransformerPretrainedModel", "projector_cls": "PatchMerger",
            "registered": registered}


BUILDERS = {"llava": _build_llava, "qwen2vl": _build_qwen2vl}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def vlm(request, tmp_path_factory):
    """(adapter, facts) for one family; built, saved and loaded once per module."""
    # Models this small run fastest on one thread, and spin far less on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp(request.param)
    facts = BUILDERS[request.param](folder)
    adapter = halluscope.load_model(str(folder), device="cpu")
    yield adapter, facts
    torch.set_num_threads(threads)
    if facts.get("registered"):
        from transformers import Qwen2VLConfig
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        PROCESSOR_MAPPING._extra_content.pop(Qwen2VLConfig, None)


# ---------------------------------------------------------------------------------------- tests
def test_parts_are_modules(vlm):
    adapter, facts = vlm
    modules = set(map(id, adapter.model.modules()))
    for part in (adapter.vision_tower, adapter.projector, adapter.language_model):
        assert isinstance(part, torch.nn.Module) and id(part) in modules
    assert type(adapter.vision_tower).__name__ == facts["vision_cls"]
    assert type(adapter.projector).__name__ == facts["projector_cls"]
    layers = adapter.decoder_layers
    assert isinstance(layers, torch.nn.ModuleList) and len(layers) == facts["decoder_layers"]
    assert adapter.image_token_id == adapter.tokenizer.convert_tokens_to_ids(facts["image_token"])


def test_image_token_mask_counts_image_tokens(vlm):
    adapter, facts = vlm
    inputs = adapter.build_inputs(facts["images"], PROMPTS)
    assert inputs["input_ids"].shape[0] == 2
    assert adapter.image_token_mask(inputs["input_ids"]).sum(-1).tolist() == facts["image_tokens"]


def test_generate_batch_returns_strings(vlm):
    adapter, facts = vlm
    out = adapter.generate(facts["images"], PROMPTS, max_new_tokens=5)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    sampled = [adapter.generate(facts["images"], PROMPTS, method="sample", seed=3, max_new_tokens=5) for _ in range(2)]
    assert len(sampled[0]) == 2 and sampled[0] == sampled[1]  # seeded sampling repeats


def test_left_padding_keeps_last_logits(vlm):
    """The next-token logits of each sample are the same alone as in a left-padded batch of two."""
    adapter, facts = vlm
    batched = adapter.forward(facts["images"], PROMPTS).logits[:, -1]
    assert adapter.build_inputs(facts["images"], PROMPTS)["attention_mask"][:, 0].tolist().count(0) >= 1  # padded
    for i in range(2):
        alone = adapter.forward(facts["images"][i:i + 1], PROMPTS[i:i + 1]).logits[:, -1]
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-4, rtol=1e-4)


def test_greedy_same_alone_and_in_batch(vlm):
    """Greedy text of each sample alone equals its text in the padded batch of two.

    A random model's logits are nearly flat, so a near-tie between the top two tokens could flip
    under the float reordering of a different batch shape. The seeded models here have no such
    near-tie on these steps (checked first, so a failure of that check names the cause, not padding).
    """
    adapter, facts = vlm
    n = 6
    alone = []
    for i in range(2):
        inputs = adapter.build_inputs(facts["images"][i:i + 1], PROMPTS[i:i + 1])
        out = adapter.model.generate(**inputs, max_new_tokens=n, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True, pad_token_id=adapter.tokenizer.pad_token_id)
        top2 = torch.stack(out.scores).float().topk(2, dim=-1).values  # (steps, 1, 2)
        assert (top2[..., 0] - top2[..., 1]).min() > 1e-4, "near-tie in the seeded model; change its seed"
        alone.append(adapter.generate(facts["images"][i:i + 1], PROMPTS[i:i + 1], max_new_tokens=n)[0])
    assert adapter.generate(facts["images"], PROMPTS, max_new_tokens=n) == alone


def test_yes_no(vlm):
    adapter, facts = vlm
    assert adapter._yes_ids and adapter._no_ids  # the tokenizer has yes and no tokens to score
    lp = adapter.yes_no_logprobs(facts["images"], QUESTIONS)
    assert lp.shape == (2, 2) and torch.isfinite(lp).all() and (lp <= 0).all()
    for mode in ("score", "generate"):
        answers = adapter.answer_yes_no(facts["images"], QUESTIONS, mode=mode)
        assert len(answers) == 2 and set(answers) <= {"yes", "no"}
    expected = ["yes" if y >= n else "no" for y, n in lp.tolist()]
    assert adapter.answer_yes_no(facts["images"], QUESTIONS, mode="score") == expected


def test_unknown_hub_id_offline_says_local_folder(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.chdir(tmp_path)  # the id is no relative folder here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; set the flag it actually consults too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(OSError, match="local folder"):
        halluscope.load_model("some-org/does-not-exist-xyz", device="cpu")
    assert time.perf_counter() - start < 10
