"""Tiny random VLMs of two families, built from configs offline and saved with `save_pretrained`
(shared by every test that needs a real-architecture model other than the built-in one):

- LLaVA (CLIP tower, MLP projector, Llama decoder) around the built-in processor, but a different
  config from the built-in model's (3-layer tower read at `vision_feature_layer=-2`);
- Qwen2-VL (its own ViT, patch merger, M-RoPE decoder) with a byte-level BPE tokenizer trained here
  on a few sentences, Qwen2-VL's special tokens and a Qwen-style chat template. Its number of image
  tokens depends on the image size, so the two test images give different counts.
"""

from __future__ import annotations

import numpy as np
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

    processor = build_processor(World(seed=0))
    tok = processor.tokenizer
    image_size = processor.image_processor.size["height"]  # the world's images, square
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=image_size, patch_size=PATCH_SIZE, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    n_image_tokens = (image_size // PATCH_SIZE) ** 2  # "default" strategy drops CLS: one token per patch
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
    images = [Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)) for _ in range(2)]
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
