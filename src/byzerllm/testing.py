"""Tiny random models of real architectures, to try a path without weights: no Stable Diffusion or
vision-language weights ship on PyPI, so the tests and the docs' examples build these. They check
the whole path and the shapes, not the quality (they draw noise and answer noise). Each
``build_*`` saves a model folder into ``out`` (in a second or two; needs torch, transformers and,
for Stable Diffusion, diffusers) and returns it."""

from __future__ import annotations

from pathlib import Path

from .backends.models import resolve_model_path


def _smollm2_tokenizer():
    """SmolLM2's tokenizer (ChatML template), read from the built-in GGUF: no download."""
    from transformers import AutoTokenizer

    gguf = Path(resolve_model_path("builtin:smollm2"))
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _tiny_llama_config(tok):
    """A 2-layer Llama of hidden size 32 over ``tok``'s vocabulary; untied embeddings, so greedy text
    varies."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def _generation_config(tok):
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)


def build_tiny_llama(out: Path) -> Path:
    """A 2-layer Llama (hidden size 32, untied embeddings so greedy text varies) with random
    weights, saved with SmolLM2's tokenizer, which carries the ChatML template."""
    import torch
    from transformers import LlamaForCausalLM

    tok = _smollm2_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(_tiny_llama_config(tok))
    model.generation_config = _generation_config(tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# a ChatML template (SmolLM2's turn markers) that also renders image parts, as VLM processors' do
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_clip_tokenizer():
    """A CLIP tokenizer with a vocabulary built here: CLIP's byte-level alphabet, each symbol also
    as a word end (``</w>``), a few merges and the two special tokens; no download."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    merges = [("a", "n"), ("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("o", "n</w>")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_tiny_sd(out: Path) -> Path:
    """A Stable Diffusion 1.x pipeline folder (``model_index.json``) of the real architecture with
    random weights: a 2-block UNet2DConditionModel (sample size 16 latents), a 2-block AutoencoderKL
    (scale factor 2, so the native size is 32x32 pixels), a 1-layer CLIPTextModel, a CLIP tokenizer
    built offline (``_tiny_clip_tokenizer``) and SD 1.5's PNDM scheduler config, no safety checker.
    It draws noise: it checks the whole path (load, scheduler swap, sizes, seeds, PNG) and the
    shapes, not the quality; a step takes milliseconds."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = _tiny_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)
    return out


def build_tiny_vlm(out: Path) -> Path:
    """A Llava (LlavaForConditionalGeneration) folder of the real architecture with random weights:
    a 1-layer CLIP vision tower (32x32 pixel images, 8-pixel patches: 16 image tokens), a 2-layer
    Llama text model (hidden size 32), SmolLM2's tokenizer (from its GGUF, as ``tiny_llama``) with an
    ``<image>`` token added, and a LlavaProcessor (CLIP image processor, Pillow variant, and a
    ChatML template that renders image parts as ``<image>``). Its text is noise: it checks the
    whole path (template, image decoding, pixel values, image tokens, generation, streaming) and
    the shapes, not the quality."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = _smollm2_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_token = tok.convert_tokens_to_ids("<image>")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",  # the CLS embedding is dropped: 16 image tokens
        num_additional_image_tokens=1,
        chat_template=VLM_CHAT_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=16,
        ),
        text_config=_tiny_llama_config(tok),
        image_token_index=image_token,
        image_seq_length=16,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config = _generation_config(tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
