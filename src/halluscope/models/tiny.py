"""The built-in model: a real `LlavaForConditionalGeneration` (CLIP vision tower, MLP projector,
Llama decoder) small enough to train on a CPU, with its own word-level tokenizer
and a LLaVA-1.5 chat template, saved and loaded with `save_pretrained` / `from_pretrained`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..world import GRID, IMAGE_SIZE, World

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN]
# LLaVA-1.5's conversation format, written for a processor's chat template.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}</s>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
PATCH_SIZE = 16
CONNECTORS = ("mlp", "linear", "query-K")
# Saved in the model's config.json under this key where the connector is not LLaVA's own MLP.
CONNECTOR_KEY = "halluscope_connector"


@dataclass
class TinyConfig(Config):
    """Sizes of the built-in model. With tied input and output embeddings and the world's default
    knobs, the default recipe meets the hallucination-profile checks on every seed tried
    (docs/studies/tiny-recipe.md)."""

    vision_hidden: int = field(default=128, metadata={"help": "CLIP width"})
    vision_layers: int = field(default=2, metadata={"help": "CLIP depth"})
    text_hidden: int = field(default=128, metadata={"help": "Llama width"})
    text_layers: int = field(default=3, metadata={"help": "Llama depth"})
    heads: int = field(default=4, metadata={"help": "attention heads in both towers"})
    max_positions: int = field(default=160, metadata={"help": "longest sequence, image tokens included"})
    tie_embeddings: bool = field(default=True, metadata={"help": "one matrix for input and output word embeddings"})
    image_size: int = field(default=IMAGE_SIZE, metadata={
        "help": f"pixels per side the vision tower sees (the world's {IMAGE_SIZE} px images are box-filtered down to "
                f"it); its patch is image_size / {GRID}, so each world cell stays one patch",
        "recipe_omits_default": True})
    connector: str = field(default="mlp", metadata={
        "help": "vision-to-language connector: 'mlp' (LLaVA-1.5's), 'linear' (LLaVA's first), or 'query-K': K "
                "learnable query tokens cross-attending to the patch features, as a Q-Former does (K tokens per image)",
        "recipe_omits_default": True})

    def __post_init__(self) -> None:
        self.check_at_least(1, "vision_hidden", "vision_layers", "text_hidden", "text_layers", "heads", "max_positions")
        if not GRID <= self.image_size <= IMAGE_SIZE or self.image_size % GRID or IMAGE_SIZE % self.image_size:
            self.fail("image_size", f"use {IMAGE_SIZE} or one of its divisors down to {GRID} (the box filter averages "
                                    "whole blocks of pixels), e.g. 32")
        if self.connector not in ("mlp", "linear") and query_tokens(self.connector) is None:
            self.fail("connector", "use 'mlp', 'linear' or 'query-K' with K >= 1, e.g. 'query-8'")

    @property
    def patch_size(self) -> int:
        return self.image_size // GRID

    @property
    def image_tokens(self) -> int:
        """Visual tokens per image in the language model's input."""
        return query_tokens(self.connector) or GRID * GRID


def query_tokens(connector: str) -> int | None:
    """K of a 'query-K' connector, else None."""
    m = re.fullmatch(r"query-(\d+)", connector)
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else None


class QueryConnector(nn.Module):
    """K learnable queries that cross-attend to the patch features, one resampler block (attention, then an
    MLP, each pre-norm and residual), as a Q-Former or a Perceiver resampler does: K visual tokens per image
    however many patches there are. The patch features first go through LLaVA's MLP (`patch_projector`), which
    stage 0 trains patch by patch."""

    def __init__(self, vision_hidden: int, text_hidden: int, k: int, heads: int) -> None:
        super().__init__()
        self.patch_projector = nn.Sequential(nn.Linear(vision_hidden, text_hidden), nn.GELU(),
                                             nn.Linear(text_hidden, text_hidden))
        self.queries = nn.Parameter(0.02 * torch.randn(k, text_hidden))
        self.norm_q, self.norm_kv, self.norm_out = (nn.LayerNorm(text_hidden) for _ in range(3))
        self.attention = nn.MultiheadAttention(text_hidden, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(text_hidden, 4 * text_hidden), nn.GELU(),
                                 nn.Linear(4 * text_hidden, text_hidden))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(self.patch_projector(features))
        q = self.queries.expand(features.shape[0], -1, -1)
        x = q + self.attention(self.norm_q(q), kv, kv, need_weights=False)[0]
        return x + self.mlp(self.norm_out(x))


def make_connector(connector: str, vision_hidden: int, text_hidden: int, heads: int) -> nn.Module:
    """The connector module that replaces LLaVA's MLP projector ('linear' or 'query-K')."""
    if connector == "linear":
        return nn.Linear(vision_hidden, text_hidden)
    k = query_tokens(connector)
    if k is None:
        raise ValueError(f"unknown connector {connector!r}; use one of {CONNECTORS}")
    return QueryConnector(vision_hidden, text_hidden, k, heads)


def patch_projector(projector: nn.Module) -> nn.Module:
    """The part of a connector that maps each patch to one token (the whole of an MLP or linear one)."""
    return getattr(projector, "patch_projector", projector)


def build_tokenizer(world: World):
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["user", "assistant", ":", *world.vocabulary()]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    # WordLevel adds no BOS by itself.
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", extra_special_tokens={"image_token": IMAGE_TOKEN}, padding_side="left",
    )


def build_processor(world: World, config: TinyConfig | None = None):
    """LLaVA's processor for the built-in model: its word-level tokenizer, images box-filtered to
    `config.image_size`, and as many image tokens per image as the connector makes."""
    from PIL import Image
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    config = config or TinyConfig()
    image_processor = CLIPImageProcessorPil(
        size={"height": config.image_size, "width": config.image_size}, do_center_crop=False, do_resize=True,
        resample=Image.Resampling.BOX, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
    )
    # LlavaProcessor writes (size / patch)^2 + extra - 1 (the CLS dropped) image tokens; a query connector's
    # K tokens are one whole-image "patch" plus K - 1 extra.
    k = query_tokens(config.connector)
    patch, extra = (config.image_size, k) if k else (config.patch_size, 1)
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=build_tokenizer(world), patch_size=patch,
        vision_feature_select_strategy="default", image_token=IMAGE_TOKEN,
        num_additional_image_tokens=extra, chat_template=CHAT_TEMPLATE,
    )


def image_size(processor) -> int:
    """Pixels per side of the images the processor makes."""
    return int(processor.image_processor.size["height"])


def image_token_count(processor) -> int:
    """Image tokens the processor writes for one image of the built-in model."""
    return (image_size(processor) // processor.patch_size) ** 2 + processor.num_additional_image_tokens - 1


def build_model(processor, config: TinyConfig | None = None, seed: int = 0):
    """A freshly initialised tiny LLaVA whose vocabulary and image grid match `processor`."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = config or TinyConfig()
    tok = processor.tokenizer
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden, intermediate_size=4 * config.vision_hidden,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.heads,
        image_size=config.image_size, patch_size=config.patch_size, projection_dim=config.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=config.text_hidden, intermediate_size=4 * config.text_hidden,
        num_hidden_layers=config.text_layers, num_attention_heads=config.heads,
        num_key_value_heads=config.heads, max_position_embeddings=config.max_positions,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=config.tie_embeddings,
    )
    llava = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=config.image_tokens,
        vision_feature_layer=-1,  # the default -2 would discard the last layer of a 2-layer tower
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        pad_token_id=tok.pad_token_id,
    )
    # Eager attention is faster than SDPA at this size on CPU (0.21 vs 0.26 s per training step).
    for c in (llava, vision, text):
        c._attn_implementation = "eager"
    if config.connector != "mlp":
        setattr(llava, CONNECTOR_KEY, config.connector)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava)
    swap_connector(model)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model


def swap_connector(model) -> None:
    """Put the connector the model's config names (`CONNECTOR_KEY`) in place of LLaVA's MLP projector."""
    connector = getattr(model.config, CONNECTOR_KEY, None)
    if connector is None:
        return
    cfg = model.config
    model.model.multi_modal_projector = make_connector(
        connector, cfg.vision_config.hidden_size, cfg.text_config.hidden_size, cfg.text_config.num_attention_heads)


def load_custom_connector(path: str | Path, **from_pretrained_kwargs):
    """A saved built-in model whose connector is not LLaVA's MLP, or None for one with the usual connector:
    `from_pretrained` loads every other part (it cannot build the connector), then the connector is built from the
    config and takes its saved weights."""
    import json

    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration
    from transformers.utils import logging

    path = Path(path)
    if json.loads((path / "config.json").read_text()).get(CONNECTOR_KEY) is None:
        return None
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the MLP projector's weights are missing, the connector's unexpected: both meant
    try:
        model = LlavaForConditionalGeneration.from_pretrained(path, **from_pretrained_kwargs)
    finally:
        logging.set_verbosity(verbosity)
    swap_connector(model)
    prefix = "multi_modal_projector."
    state = {k[k.index(prefix) + len(prefix):]: v for k, v in load_file(path / "model.safetensors").items()
             if prefix in k}
    projector = model.model.multi_modal_projector
    missing, unexpected = projector.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise OSError(f"{path}/model.safetensors does not hold the {getattr(model.config, CONNECTOR_KEY)} connector "
                      f"its config.json names (missing {missing[:3]}, unexpected {unexpected[:3]}); retrain the model "
                      "into an empty folder")
    projector.to(model.dtype)
    return model
