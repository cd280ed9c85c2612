"""The model a config describes: UNet, optional VAE, text encoders; weights from safetensors only.

Contract: ``build_model(cfg: ModelConfig, seed)`` -> ``Diffusion``, built the same way for the
same (config, seed) (torch's global RNG is reseeded with ``seed`` first):
- ``unet``: a diffusers ``UNet2DConditionModel`` laid out as ``cfg.unet``; its input is the
  VAE's latents (``cfg.vae``: an ``AutoencoderKL`` folder) or RGB pixels (``cfg.vae`` null).
  Several text encoders are concatenated feature-wise (SDXL); when their widths do not sum to
  ``cross_attention_dim`` the UNet projects them (``encoder_hid_dim``). With
  ``micro_conditioning`` the UNet takes SDXL's ``text_time`` embedding: the last encoder's
  pooled output plus (orig_h, orig_w, crop_top, crop_left, target_h, target_w).
- ``encoders``: frozen ``TextEncoder``s, each ``encode(texts) -> (hidden (B, L, H), pooled (B, P))``.
  ``tiny``: a ``CLIPTextModel`` built from config over open_clip's BPE tokenizer (random, seeded);
  ``clip`` (penultimate layer, pooler), ``t5`` (last layer, masked mean), ``chatglm3`` (Kolors:
  penultimate layer, last token of the last layer; transformers' remote code from that folder).
- ``Diffusion.to_latents(pixels, generator)`` / ``to_pixels(latents)``: in and out of the UNet's
  space; ``encode_text(captions_per_encoder)`` -> (hidden states, pooled);
  ``added_conditions(pooled, time_ids)`` -> the UNet's ``added_cond_kwargs`` (or None).
- ``load_weights(module, path)``: a ``.safetensors`` file into a module, every key matching.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

from trainer.config import ModelConfig, TextEncoderConfig


class TextEncoder(torch.nn.Module):
    """A frozen text encoder and its tokenizer (module doc)."""

    def __init__(self, cfg: TextEncoderConfig, seed: int):
        super().__init__()
        self.cfg = cfg
        if cfg.kind == "tiny":
            from open_clip.tokenizer import SimpleTokenizer
            from transformers import CLIPTextConfig, CLIPTextModel

            self.tokenizer = SimpleTokenizer(context_length=cfg.max_length)
            torch.manual_seed(seed)
            self.model = CLIPTextModel(CLIPTextConfig(
                vocab_size=self.tokenizer.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=4 * cfg.hidden_size,
                num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, max_position_embeddings=cfg.max_length,
                bos_token_id=self.tokenizer.sot_token_id, eos_token_id=self.tokenizer.eot_token_id, pad_token_id=0))
        else:
            self.tokenizer, self.model = _pretrained(cfg)
        self.model.requires_grad_(False).eval()
        self.hidden_size = int(self.model.config.hidden_size)
        self.pooled_size = self.hidden_size

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        if self.cfg.kind == "tiny":
            out = self.model(input_ids=self.tokenizer(list(texts)).to(device))
            return out.last_hidden_state, out.pooler_output
        tokens = self.tokenizer(list(texts), padding="max_length", max_length=self.cfg.max_length, truncation=True,
                                return_tensors="pt").to(device)
        if self.cfg.kind == "clip":
            out = self.model(input_ids=tokens.input_ids, output_hidden_states=True)
            return out.hidden_states[-2], out.pooler_output
        if self.cfg.kind == "t5":
            hidden = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
            mask = tokens.attention_mask.unsqueeze(-1).to(hidden.dtype)
            return hidden, (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                         position_ids=tokens.get("position_ids"), output_hidden_states=True)
        return out.hidden_states[-2].permute(1, 0, 2).clone(), out.hidden_states[-1][-1].clone()  # seq-first, as Kolors


def _pretrained(cfg: TextEncoderConfig):
    from transformers import AutoModel, AutoTokenizer, CLIPTextModel, T5EncoderModel

    remote = cfg.kind == "chatglm3"  # ChatGLM3 ships its modelling code in its own folder
    tokenizer = AutoTokenizer.from_pretrained(cfg.path, trust_remote_code=remote)
    loader = {"clip": CLIPTextModel, "t5": T5EncoderModel, "chatglm3": AutoModel}[cfg.kind]
    return tokenizer, loader.from_pretrained(cfg.path, use_safetensors=True, trust_remote_code=remote)


@dataclass
class Diffusion:
    unet: UNet2DConditionModel
    vae: AutoencoderKL | None
    encoders: list[TextEncoder]

    def to(self, device: torch.device) -> "Diffusion":
        for module in (self.unet, self.vae, *self.encoders):
            if module is not None:
                module.to(device)
        return self

    @torch.no_grad()
    def to_latents(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.vae is None:
            return pixels
        latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample(generator)
        shift = self.vae.config.shift_factor or 0.0
        return ((latents - shift) * self.vae.config.scaling_factor).float()

    @torch.no_grad()
    def to_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return latents.clamp(-1, 1)
        shift = self.vae.config.shift_factor or 0.0
        return self.vae.decode(latents / self.vae.config.scaling_factor + shift).sample.clamp(-1, 1)

    def encode_text(self, captions_per_encoder: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [enc.encode(texts) for enc, texts in zip(self.encoders, captions_per_encoder, strict=True)]
        return torch.cat([h for h, _ in outs], dim=-1).float(), outs[-1][1].float()

    def added_conditions(self, pooled: torch.Tensor, time_ids: torch.Tensor) -> dict | None:
        if self.unet.config.addition_embed_type != "text_time":
            return None
        return {"text_embeds": pooled, "time_ids": time_ids.to(pooled)}


def build_model(cfg: ModelConfig, seed: int) -> Diffusion:
    """The UNet, VAE and text encoders of ``cfg``, initialised from ``seed`` (module doc)."""
    encoders = [TextEncoder(e, seed + 1 + i) for i, e in enumerate(cfg.text_encoders)]
    vae = None
    if cfg.vae is not None:
        vae = AutoencoderKL.from_pretrained(cfg.vae, use_safetensors=True).requires_grad_(False).eval()
    channels = 3 if vae is None else int(vae.config.latent_channels)
    u = cfg.unet
    hidden = sum(e.hidden_size for e in encoders)
    project = hidden != cfg.cross_attention_dim  # the UNet projects the encoders' width
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=channels, out_channels=channels, block_out_channels=tuple(u.block_out_channels),
        down_block_types=tuple(u.down_block_types), up_block_types=tuple(u.up_block_types),
        layers_per_block=u.layers_per_block, transformer_layers_per_block=u.transformer_layers_per_block,
        attention_head_dim=u.attention_head_dim, norm_num_groups=u.norm_num_groups,
        cross_attention_dim=cfg.cross_attention_dim, use_linear_projection=True,
        encoder_hid_dim=hidden if project else None, encoder_hid_dim_type="text_proj" if project else None,
        addition_embed_type="text_time" if u.micro_conditioning else None,
        addition_time_embed_dim=u.addition_time_embed_dim if u.micro_conditioning else None,
        projection_class_embeddings_input_dim=(encoders[-1].pooled_size + 6 * u.addition_time_embed_dim
                                               if u.micro_conditioning else None))
    return Diffusion(unet=unet, vae=vae, encoders=encoders)


def load_weights(module: torch.nn.Module, path) -> None:
    """``path`` (safetensors) into ``module``; a missing or unexpected key is an error naming the file."""
    state = load_file(str(path))
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path} does not fit the model: {len(result.missing_keys)} missing keys "
                         f"(e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected "
                         f"(e.g. {result.unexpected_keys[:2]})")
