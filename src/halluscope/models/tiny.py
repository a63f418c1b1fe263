"""The built-in model: a real `LlavaForConditionalGeneration` (CLIP vision tower, MLP projector,
Llama decoder) small enough to train on a CPU, with its own word-level tokenizer
and a LLaVA-1.5 chat template, saved and loaded with `save_pretrained` / `from_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from ..world import IMAGE_SIZE, World

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


def build_processor(world: World):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_center_crop=False, do_resize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=build_tokenizer(world), patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )


def build_model(processor, config: TinyConfig | None = None, seed: int = 0):
    """A freshly initialised tiny LLaVA whose vocabulary and image grid match `processor`."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = config or TinyConfig()
    tok = processor.tokenizer
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden, intermediate_size=4 * config.vision_hidden,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.heads,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=config.vision_hidden,
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
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_layer=-1,  # the default -2 would discard the last layer of a 2-layer tower
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        pad_token_id=tok.pad_token_id,
    )
    # Eager attention is faster than SDPA at this size on CPU (0.21 vs 0.26 s per training step).
    for c in (llava, vision, text):
        c._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model
