"""Tiny random VLMs of two families, built from configs offline and saved with `save_pretrained`
(shared by every test that needs a real-architecture model other than the built-in one):

- LLaVA (CLIP tower, MLP projector, Llama decoder) around the built-in processor, but a different
  config from the built-in model's (3-layer tower read at `vision_feature_layer=-2`);
- Qwen2-VL (its own ViT, patch merger, M-RoPE decoder) with a byte-level BPE tokenizer trained here
  on a few sentences, Qwen2-VL's special tokens and a Qwen-style chat template. Its number of image
  tokens depends on the image size, so the two test images give different counts.
"""

from __future__ import annotations

from types import SimpleNamespace

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

    return no_video(Qwen2VLProcessor)


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
            "registered": registered and Qwen2VLConfig}


BUILDERS = {"llava": _build_llava, "qwen2vl": _build_qwen2vl}


# ------------------------------------------------------------------------ every other family
# Each builder below makes a tiny random model of one family from its config, with that family's processor
# around a byte-level BPE tokenizer trained here (the family's special tokens, a chat template written in its
# style), saves both, and returns the facts its tests check. Widths are 32, depths 1-2, images 32-64 pixels.
CORPUS = [*PROMPTS, *QUESTIONS, "user assistant system yes no Yes No", halluscope.models.YES_NO_SUFFIX,
          "A fork and a red cup on a table.", "Describe the image. The input image is described as follows:",
          "You are a confused object detector to provide a fuzzy overview or impression of the image."]


def bpe_tokenizer(special: list[str], vocab_size: int = 360, padding_side: str = "left", **kwargs):
    """A byte-level BPE tokenizer trained on CORPUS with `special` tokens (ids 0..); `kwargs` name its
    bos/eos/pad tokens and extra special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side=padding_side, **kwargs)


def no_video(processor_cls):
    """`processor_cls` without its video processor where torchvision is missing (see `_qwen_processor_class`:
    transformers then cannot build or load a video processor), registered with AutoProcessor by the caller.

    ProcessorMixin reads a processor's sub-processors and arguments from its `__init__`'s code (from_pretrained
    passes only the arguments named there), so each stand-in spells out its parent's arguments but the video
    processor."""
    from transformers import LlavaOnevisionProcessor, SmolVLMProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return processor_cls, False
    if processor_cls is LlavaOnevisionProcessor:
        class Stand(processor_cls):
            def __init__(self, image_processor=None, tokenizer=None, num_image_tokens=None,
                         vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
                         video_token="<video>", vision_aspect_ratio="anyres_max_9", **kwargs):
                super().__init__(image_processor, tokenizer, None, num_image_tokens, vision_feature_select_strategy,
                                 chat_template, image_token, video_token, vision_aspect_ratio, **kwargs)
    elif processor_cls is SmolVLMProcessor:
        class Stand(processor_cls):
            # SmolVLMProcessor's defaults for videos: its chat template reads them even for images
            video_processor = SimpleNamespace(num_frames=64, fps=1)

            def __init__(self, image_processor=None, tokenizer=None, image_seq_len=169, chat_template=None, **kwargs):
                super().__init__(image_processor, tokenizer, None, image_seq_len, chat_template, **kwargs)
    else:  # Qwen2-VL's and Qwen2.5-VL's
        class Stand(processor_cls):
            def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
                super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    Stand.__name__ = Stand.__qualname__ = f"{processor_cls.__name__}NoVideo"
    return Stand, True


def random_images(seed: int, shapes) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]


def save(folder, model, processor, tok, eos=None) -> None:
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id if eos is None else eos
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def llama(tok, **extra) -> dict:
    """A 2-layer Llama-style text config for `tok`, as a dict (families take it in their own config class)."""
    return {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
            **extra}


# LLaVA-1.5's conversation format (LLaVA-NeXT's Vicuna and Mistral checkpoints use variants of it).
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _build_llava_next(folder) -> dict:
    from transformers import (CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessorPil, LlavaNextProcessor)

    tok = bpe_tokenizer(["<pad>", "<s>", "</s>", "<unk>", "<image>"], bos_token="<s>", eos_token="</s>",
                        pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    # 32-pixel tiles of 2x2 patches; an image is one base tile plus the tiles of its best grid (anyres).
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                 image_grid_pinpoints=pinpoints, image_mean=[0.5] * 3,
                                                 image_std=[0.5] * 3)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=16,
                                   vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                                   num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=32)
    config = LlavaNextConfig(vision_config=vision, text_config=llama(tok), image_grid_pinpoints=pinpoints,
                             image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                             vision_feature_select_strategy="default", pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save(folder, LlavaNextForConditionalGeneration(config), processor, tok)
    images = random_images(2, [(32, 32), (32, 64)])
    # base 2x2 patches, then the unpadded grid (rows x cols of patches) with one newline per row
    expected = [4 + 2 * 2 + 2, 4 + 2 * 4 + 2]
    return {"images": images, "image_tokens": expected, "decoder_layers": 2, "image_token": "<image>",
            "vision_cls": "CLIPVisionModel", "projector_cls": "LlavaNextMultiModalProjector"}


QWEN2_CHAT = QWEN_TEMPLATE


def _build_llava_onevision(folder) -> dict:
    from transformers import (AutoProcessor, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor, SiglipVisionConfig)

    # Qwen2 chat format with LLaVA's <image> placeholder, as the llava-onevision-qwen2 checkpoints have it.
    template = QWEN_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n")
    tok = bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                        eos_token="<|im_end|>", pad_token="<|endoftext|>",
                        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints,
                                                      image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor_cls, registered = no_video(LlavaOnevisionProcessor)
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, num_image_tokens=4,
                              vision_feature_select_strategy="full", chat_template=template)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=32, patch_size=16)
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config={"model_type": "qwen2", **llama(tok, bos_token_id=None)},
        image_grid_pinpoints=pinpoints, image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    if registered:
        AutoProcessor.register(LlavaOnevisionConfig, processor_cls, exist_ok=True)
    torch.manual_seed(0)
    save(folder, LlavaOnevisionForConditionalGeneration(config), processor, tok)
    images = random_images(3, [(32, 32), (64, 32)])
    # 2x2 base patches, then the unpadded grid (1x1 and 2x1 tiles of 2x2 patches) with a newline per row
    return {"images": images, "image_tokens": [4 + 4 + 2, 4 + 8 + 4], "decoder_layers": 2, "image_token": "<image>",
            "vision_cls": "SiglipVisionModel", "projector_cls": "LlavaOnevisionMultiModalProjector",
            "registered": registered and LlavaOnevisionConfig}


def _build_qwen2_5vl(folder) -> dict:
    from transformers import (AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil)

    tok = _qwen_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 84, patch_size=PATCH,
                                               temporal_patch_size=2, merge_size=MERGE)
    processor_cls, registered = no_video(Qwen2_5_VLProcessor)
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, chat_template=QWEN_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=llama(tok, bos_token_id=None,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
        # windowed attention in block 0, full in block 1, as the real tower alternates them
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    if registered:
        AutoProcessor.register(Qwen2_5_VLConfig, processor_cls, exist_ok=True)
    torch.manual_seed(0)
    save(folder, Qwen2_5_VLForConditionalGeneration(config), processor, tok)
    shapes = [(56, 56), (84, 56)]
    return {"images": random_images(4, shapes), "decoder_layers": 2, "image_token": "<|image_pad|>",
            "image_tokens": [(h // PATCH) * (w // PATCH) // MERGE**2 for h, w in shapes],
            "vision_cls": "Qwen2_5_VisionTransformerPretrainedModel", "projector_cls": "Qwen2_5_VLPatchMerger",
            "registered": registered and Qwen2_5_VLConfig}


IDEFICS3_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                    "<global-img>", *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]]
# SmolVLM's chat format.
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _build_idefics3(folder) -> dict:
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                              Idefics3Processor)

    tok = bpe_tokenizer(IDEFICS3_SPECIAL, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                        pad_token="<|endoftext|>")
    # SmolVLM's layout at a small size: an image is resized to 64 pixels on its longest edge and split into
    # 32-pixel tiles plus a global view; each tile is 4x4 patches of 8, merged 2x2 (scale_factor 2): 4 tokens.
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                                do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    config = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=llama(tok), scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save(folder, Idefics3ForConditionalGeneration(config), processor, tok)
    # resized to 64 on the longest edge: 2x2 and 1x2 grids of tiles plus a global view, 5 and 3 sub-images
    # (padded to 5 in a batch)
    images = random_images(5, [(32, 32), (32, 64)])
    return {"images": images, "image_tokens": [4 * 5, 4 * 3], "decoder_layers": 2, "image_token": "<image>",
            "vision_cls": "Idefics3VisionTransformer", "projector_cls": "Idefics3Connector"}


def _build_smolvlm(folder) -> dict:
    from transformers import (AutoProcessor, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil,
                              SmolVLMProcessor)

    tok = bpe_tokenizer(IDEFICS3_SPECIAL, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                        pad_token="<|endoftext|>")
    image_processor = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                               do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor_cls, registered = no_video(SmolVLMProcessor)
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                              chat_template=IDEFICS3_TEMPLATE)
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=llama(tok), scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id)
    if registered:
        AutoProcessor.register(SmolVLMConfig, processor_cls, exist_ok=True)
    torch.manual_seed(0)
    save(folder, SmolVLMForConditionalGeneration(config), processor, tok)
    images = random_images(6, [(32, 64), (32, 32)])
    return {"images": images, "image_tokens": [4 * 3, 4 * 5], "decoder_layers": 2, "image_token": "<image>",
            "vision_cls": "SmolVLMVisionTransformer", "projector_cls": "SmolVLMConnector",
            "registered": registered and SmolVLMConfig}


def _build_paligemma(folder) -> dict:
    from transformers import (PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessorPil, SiglipVisionConfig)

    tok = bpe_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], bos_token="<bos>", eos_token="<eos>",
                        pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                                              image_std=[0.5] * 3)
    image_processor.image_seq_length = 16  # (32 / 8) ** 2 patches
    # PaliGemma has no chat template: the processor puts the image tokens and BOS before the prompt.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=32, patch_size=8, projection_dim=32)
    text = {"model_type": "gemma", **llama(tok, head_dim=16), "vocab_size": len(tok)}
    config = PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=32,
                             image_token_index=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    config.text_config.vocab_size = len(tok)
    torch.manual_seed(0)
    save(folder, PaliGemmaForConditionalGeneration(config), processor, tok)
    return {"images": random_images(7, [(32, 32), (40, 24)]), "image_tokens": [16, 16], "decoder_layers": 2,
            "image_token": "<image>", "vision_cls": "SiglipVisionModel",
            "projector_cls": "PaliGemmaMultiModalProjector"}


GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
    "else message['role'] }}\n{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _build_gemma3(folder) -> dict:
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil,
                              Gemma3Processor, SiglipVisionConfig)

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
               "<end_of_image>", "<image_soft_token>"]
    tok = bpe_tokenizer(special, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                              "image_token": "<image_soft_token>"})
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                                              image_std=[0.5] * 3)
    # 4x4 patches pooled to 2x2 = 4 soft tokens per image
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=4,
                                chat_template=GEMMA3_TEMPLATE)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=32, patch_size=8)
    ids = tok.convert_tokens_to_ids
    text = llama(tok, head_dim=16, sliding_window=16, layer_types=["sliding_attention", "full_attention"])
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                          image_token_index=ids("<image_soft_token>"))
    torch.manual_seed(0)
    save(folder, Gemma3ForConditionalGeneration(config), processor, tok, eos=[tok.eos_token_id, ids("<end_of_turn>")])
    return {"images": random_images(8, [(32, 32), (48, 32)]), "image_tokens": [4, 4], "decoder_layers": 2,
            "image_token": "<image_soft_token>", "vision_cls": "SiglipVisionModel",
            "projector_cls": "Gemma3MultiModalProjector"}


def _build_instructblip(folder) -> dict:
    from transformers import (BlipImageProcessorPil, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor)

    # The processor adds its own <image> token (a tokenizer that names one is not read right in this version).
    tok = bpe_tokenizer(["<pad>", "<s>", "</s>", "<unk>"], bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                        unk_token="<unk>")
    # The Q-Former's BERT-style tokenizer pads on the right, as the real one does (absolute positions).
    qformer_tok = bpe_tokenizer(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], vocab_size=300, padding_side="right",
                                pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]")
    image_processor = BlipImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    # No chat template: InstructBLIP takes the plain instruction, and the processor puts the query tokens first.
    processor = InstructBlipProcessor(image_processor=image_processor, tokenizer=tok, qformer_tokenizer=qformer_tok,
                                      num_query_tokens=4)
    config = InstructBlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(vocab_size=len(qformer_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, encoder_hidden_size=32, cross_attention_frequency=1,
                            pad_token_id=qformer_tok.pad_token_id),
        # tied word embeddings: this random decoder's greedy answers then repeat tokens, which the generation
        # config tests need to see a repetition penalty act on
        text_config={"model_type": "llama", **llama(tok, tie_word_embeddings=True)}, num_query_tokens=4,
        image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    save(folder, InstructBlipForConditionalGeneration(config), processor, tok)
    return {"images": random_images(9, [(32, 32), (24, 40)]), "image_tokens": [4, 4], "decoder_layers": 2,
            "image_token": "<image>", "vision_cls": "InstructBlipVisionModel",
            "projector_cls": "InstructBlipQFormerModel"}


MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|image|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _build_mllama(folder) -> dict:
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessorPil, MllamaProcessor

    special = ["<|finetune_right_pad_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
               "<|start_header_id|>", "<|end_header_id|>", "<|image|>", "<|python_tag|>"]
    tok = bpe_tokenizer(special, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                        pad_token="<|finetune_right_pad_id|>", extra_special_tokens={"image_token": "<|image|>"})
    # Tiles of 32 pixels, up to 2 per image (aspect ratios 1x1, 1x2, 2x1).
    image_processor = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2,
                                              image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tok, chat_template=MLLAMA_TEMPLATE)
    config = MllamaConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                           attention_heads=2, image_size=32, patch_size=8, max_num_tiles=2,
                           intermediate_layers_indices=[0], vision_output_dim=64,
                           supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]]),
        # decoder layer 1 of 3 is a cross-attention layer over the image
        text_config=llama(tok, num_hidden_layers=3, cross_attention_layers=[1], rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0}),
        image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    torch.manual_seed(0)
    save(folder, MllamaForConditionalGeneration(config), processor, tok)
    return {"images": random_images(10, [(32, 32), (32, 64)]), "image_tokens": [1, 1], "decoder_layers": 3,
            "image_token": "<|image|>", "vision_cls": "MllamaVisionModel", "projector_cls": "Linear"}


# Every family the adapter is tested on: the two above (the engine's own tests run on those) and these.
FAMILIES = {**BUILDERS, "llava_next": _build_llava_next, "llava_onevision": _build_llava_onevision,
            "qwen2_5_vl": _build_qwen2_5vl, "idefics3": _build_idefics3, "smolvlm": _build_smolvlm,
            "paligemma": _build_paligemma, "gemma3": _build_gemma3, "instructblip": _build_instructblip,
            "mllama": _build_mllama}
