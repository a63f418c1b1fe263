"""Randomly initialised VLMs with real models' shapes, built offline, for speed studies: weights do not change
how long a forward pass takes, so a model built from a checkpoint's config, with random weights, costs what the
checkpoint costs.

    adapter, images = build_shape("smolvlm-256m", batches=2, batch_size=8)

Each shape is a real model's architecture and sizes (its transformers class, text and vision configs, vocabulary
size) with a processor that makes that model's number of image tokens for the image size given, around a small
byte-level BPE tokenizer (the one `tests/tiny_vlms.py` trains, with the family's special tokens and chat format):
token ids need only be in range, and the prompt's text is a few dozen tokens against hundreds of image tokens.
The builders reuse `tests/tiny_vlms.py`'s tokenizer, chat templates and processor work-arounds (imported from
there, as the tests do).

Where each shape's numbers come from (checked against copies of the configs found with the project's search tool;
the hub itself is not reachable from here):

- smolvlm-256m: HuggingFaceTB/SmolVLM-256M-Instruct, `Idefics3ForConditionalGeneration`. Text (a Llama):
  hidden 576, intermediate 1536, 30 layers, 9 heads, 3 KV heads, head_dim 64, vocab 49280, rope_theta 100000,
  8192 positions, untied output embeddings; scale_factor 4, image_token_id 49190. Vision (SigLIP base, from
  google/siglip-base-patch16-512): hidden 768, intermediate 3072, 12 layers, 12 heads, image 512, patch 16, so
  (512 / 16)^2 / 4^2 = 64 tokens per 512-pixel tile. Sources: the config.json of
  https://huggingface.co/Mattimax/DATA-AI_Smol256M-Instruct/blob/main/config.json (a fine-tune whose
  `_name_or_path` is HuggingFaceTB/SmolVLM-256M-Instruct: the text config, scale_factor, image_token_id), the model
  card (bases SmolLM2-135M and google/siglip-base-patch16-512), https://huggingface.co/Xenova/siglip-base-patch16-512
  (image_size 512; the other vision sizes are SigLIP base's defaults), and a public parser test that spells out
  the nested idefics3 config with the vision sizes, vocab 49280 and rope_theta 100000.
- qwen2-vl-2b: Qwen/Qwen2-VL-2B-Instruct, `Qwen2VLForConditionalGeneration`. Text: hidden 1536, intermediate 8960,
  28 layers, 12 heads, 2 KV heads, vocab 151936, rope_theta 1e6, M-RoPE sections [16, 24, 24], tied embeddings.
  Vision: depth 32, embed_dim 1280, 16 heads, mlp_ratio 4, patch 14, temporal patch 2, spatial merge 2, merger
  out 1536. Source: https://huggingface.co/onnx-community/Qwen2-VL-2B-Instruct/blob/214aa9f9bbb9fa4358067a0b7eab6c0587a6ead9/config.json
  (`_name_or_path` Qwen/Qwen2-VL-2B-Instruct; its vision_config names only hidden_size 1536 and patch 14, the rest
  are Qwen2VLVisionConfig's defaults, which are those numbers).
- llava-1.5-7b: llava-hf/llava-1.5-7b-hf, `LlavaForConditionalGeneration`. CLIP ViT-L/14 at 336 (hidden 1024,
  intermediate 4096, 24 layers, 16 heads, patch 14: 576 image tokens), read at layer -2 without CLS; Vicuna-7B
  (Llama: hidden 4096, intermediate 11008, 32 layers, 32 heads, vocab 32064, 4096 positions). Source: copies of
  its config.json, e.g. https://huggingface.co/mohitsha/llava-1.5-7b-hf/blob/main/config.json (the text sizes not
  named there are LlamaConfig's defaults, which are Llama-2-7B's). 28 GB in float32: for a GPU, in bfloat16.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
PROMPT = "Describe the image."  # in the BPE tokenizer's training text: a few tokens, as with a real tokenizer


def _tiny_vlms():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import tiny_vlms

    return tiny_vlms


@dataclass(frozen=True)
class Shape:
    name: str
    checkpoint: str  # the hub id whose config it copies
    image_size: tuple[int, int]  # (height, width) of the test images
    image_tokens: int  # image tokens per image at that size (checked when built)
    note: str


SHAPES = {
    "smolvlm-256m": Shape("smolvlm-256m", "HuggingFaceTB/SmolVLM-256M-Instruct", (512, 512), 64,
                          "one 512-pixel tile per image (image splitting off); the checkpoint's own processor "
                          "resizes to 2048 pixels and adds 16 tiles to the global one: 1088 tokens per image"),
    "qwen2-vl-2b": Shape("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", (224, 224), 64,
                         "224x224 images: 16x16 patches of 14, merged 2x2 into 64 tokens (448x448 would give 256)"),
    "llava-1.5-7b": Shape("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", (336, 336), 576,
                          "one 336-pixel image: 24x24 patches, 576 tokens, as the checkpoint"),
}


def _smolvlm(tv, image_size: tuple[int, int]):
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                              Idefics3Processor)

    tok = tv.bpe_tokenizer(tv.IDEFICS3_SPECIAL, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                           pad_token="<|endoftext|>")
    edge = max(image_size)
    # No splitting: each image is resized to one 512-pixel tile, 64 tokens after the 4x4 pixel shuffle.
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": edge}, max_image_size={"longest_edge": 512},
                                                do_image_splitting=False, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=64,
                                  chat_template=tv.IDEFICS3_TEMPLATE)
    config = Idefics3Config(
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=512, patch_size=16),
        text_config=dict(model_type="llama", vocab_size=49280, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                         max_position_embeddings=8192, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        scale_factor=4, image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False)
    return Idefics3ForConditionalGeneration, config, processor, tok


def _qwen2vl(tv, image_size: tuple[int, int]):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil, Qwen2VLProcessor

    tok = tv._qwen_tokenizer()
    pixels = image_size[0] * image_size[1]
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels, patch_size=14,
                                               temporal_patch_size=2, merge_size=2)
    processor_cls, registered = tv.no_video(Qwen2VLProcessor)
    if registered:
        processor = processor_cls(image_processor=image_processor, tokenizer=tok, chat_template=tv.QWEN_TEMPLATE)
    else:
        from transformers import Qwen2VLVideoProcessor

        processor = processor_cls(image_processor=image_processor, tokenizer=tok,
                                  video_processor=Qwen2VLVideoProcessor(), chat_template=tv.QWEN_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                         rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
                         bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True)
    return Qwen2VLForConditionalGeneration, config, processor, tok


def _llava7b(tv, image_size: tuple[int, int]):
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = tv.bpe_tokenizer(["<pad>", "<s>", "</s>", "<unk>", "<image>"], bos_token="<s>", eos_token="</s>",
                           pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tv.LLAVA_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         image_seq_length=576, vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu", pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    return LlavaForConditionalGeneration, config, processor, tok


BUILDERS = {"smolvlm-256m": _smolvlm, "qwen2-vl-2b": _qwen2vl, "llava-1.5-7b": _llava7b}


def build_shape(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, image_size=None, seed: int = 0):
    """(adapter, shape, facts): a randomly initialised model of shape `name` on `device` in `dtype`, behind the
    library's adapter; `facts` records what was built (parameters, image tokens per image, attention)."""
    from halluscope.decoding import VLMAdapter

    shape = SHAPES[name]
    if image_size is not None:
        shape = Shape(shape.name, shape.checkpoint, tuple(image_size), -1, f"{image_size[0]}x{image_size[1]} images")
    tv = _tiny_vlms()
    model_cls, config, processor, tok = BUILDERS[name](tv, shape.image_size)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its dtype: a 7B model is not made in float32 first
    try:
        with torch.device(device):
            model = model_cls(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    adapter = VLMAdapter(model, processor, name=f"shape:{name}")
    adapter.load_args = {"dtype": str(dtype).removeprefix("torch."), "device": str(adapter.device),
                         "random_init": True, "seed": seed}
    image = tv.random_images(0, [shape.image_size])[0]
    n_tokens = int(adapter.image_token_mask(adapter.build_inputs([image], [PROMPT])["input_ids"]).sum())
    if shape.image_tokens > 0 and n_tokens != shape.image_tokens:
        raise RuntimeError(f"{name}: the processor made {n_tokens} image tokens per image, not {shape.image_tokens}")
    facts: dict[str, Any] = {
        "shape": name, "checkpoint": shape.checkpoint, "class": type(model).__name__, "note": shape.note,
        "image_size": list(shape.image_size), "image_tokens": n_tokens,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": model.get_output_embeddings().weight.shape[0],
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "tokenizer_size": len(tok), "prompt_tokens": None,
    }
    return adapter, shape, facts


def shape_images(shape: Shape, n: int, seed: int = 1):
    """`n` random RGB images of the shape's size (their content does not change the cost)."""
    return _tiny_vlms().random_images(seed, [shape.image_size] * n)


__all__ = ["PROMPT", "SHAPES", "Shape", "build_shape", "shape_images"]
