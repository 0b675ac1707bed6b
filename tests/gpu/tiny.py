"""Tiny random-weight diffusers pipelines built in code, saved as diffusers folders.

No hub access: the T5 encoder comes from a config object and the tokenizer from a word
list (a ``tokenizers`` word-level model in a fast tokenizer). The shapes follow the real
models where it matters to reelgate: Wan 2.1's 8x VAE, Wan 2.2 TI2V's 48-channel 16x
VAE with ``expand_timesteps``, LTX-Video's 32x/8x VAE.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

WORDS = [
    "a",
    "cat",
    "dog",
    "runs",
    "on",
    "the",
    "beach",
    "at",
    "sunset",
    "city",
    "night",
    "slow",
    "camera",
    "pan",
    "red",
    "blue",
]
TEXT_DIM = 32


def tokenizer() -> PreTrainedTokenizerFast:
    """A T5-like fast tokenizer over ``WORDS`` (pad 0, end 1, unknown 2)."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    model.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def text_encoder() -> T5EncoderModel:
    config = T5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    return T5EncoderModel(config).eval()


def _wan_transformer(channels: int) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels,
        out_channels=channels,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def wan_t2v(folder: Path) -> Path:
    """A Wan 2.1 T2V-shaped pipeline: 16 latent channels, VAE 8x, patches of 2."""
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    pipe = WanPipeline(
        tokenizer=tokenizer(),
        text_encoder=text_encoder(),
        vae=vae,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
        transformer=_wan_transformer(16),
    )
    pipe.save_pretrained(folder)
    return folder


def wan_ti2v(folder: Path) -> Path:
    """A Wan 2.2 TI2V 5B-shaped pipeline: the 48-channel VAE (16x), ``expand_timesteps``."""
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    pipe = WanPipeline(
        tokenizer=tokenizer(),
        text_encoder=text_encoder(),
        vae=vae,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
        transformer=_wan_transformer(48),
        expand_timesteps=True,
    )
    pipe.save_pretrained(folder)
    return folder


def ltx(folder: Path) -> Path:
    """An LTX-Video-shaped pipeline: VAE 32x in space (patches of 4, 3 scalings), 8x in time."""
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=TEXT_DIM,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder(),
        tokenizer=tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(folder)
    return folder
