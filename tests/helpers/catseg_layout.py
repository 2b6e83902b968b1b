"""A tiny model's weights in an official CAT-Seg checkpoint's layout (the converter's tests).

The inverse of cat_seg.engine.catseg_checkpoint's renaming, written out here independently of the
converter: CLIP under ``sem_seg_head.predictor.clip_model.`` in OpenAI's layout with CAT-Seg's
separate ``attn.{q,k,v}_proj_weight`` and packed ``attn.in_proj_bias``, the aggregator under
``sem_seg_head.predictor.transformer.``, the guidance upsamplers as ``upsample1/2``, and the
shifted-window attention masks CAT-Seg saves as buffers.
"""
import re

import torch

from cat_seg.ahs_seg_model import AHSSeg

from .configs import make_cfg

TINY_YAML = """
MODEL:
  SEM_SEG_HEAD:
    CLIP_PRETRAINED: "AHS-Tiny/16"
    CLIP_WEIGHTS: "random"
    CLIP_RESOLUTION: 64
    CLIP_GUIDANCE_LAYERS: [0, 1]
    CLIP_FINETUNE: "attention"
    HIDDEN_DIMS: 32
    TEXT_GUIDANCE_PROJ_DIM: 16
    APPEARANCE_GUIDANCE_PROJ_DIM: 16
    DECODER_DIMS: [32, 16]
    DECODER_GUIDANCE_DIMS: [16, 8]
    DECODER_GUIDANCE_PROJ_DIMS: [8, 4]
    POOLING_SIZES: [1, 1]
"""

# AHS-Seg head name -> CAT-Seg name (the inverse of the converter's renaming).
_AGG = "sem_seg_head.predictor.transformer."
_TO_CATSEG = [
    (r"cost_embed\.", _AGG + "conv1."),
    (r"appearance_guidance_proj\.", _AGG + "guidance_projection.0."),
    (r"text_guidance_proj\.", _AGG + "text_guidance_projection.0."),
    (r"layers\.(\d+)\.spatial\.blocks\.0\.", _AGG + r"layers.\1.swin_block.block_1."),
    (r"layers\.(\d+)\.spatial\.blocks\.1\.", _AGG + r"layers.\1.swin_block.block_2."),
    (r"layers\.(\d+)\.spatial\.guidance_norm\.", _AGG + r"layers.\1.swin_block.guidance_norm."),
    (r"layers\.(\d+)\.classwise\.attn\.", _AGG + r"layers.\1.attention.attention."),
    (r"layers\.(\d+)\.classwise\.mlp\.fc1\.", _AGG + r"layers.\1.attention.MLP.0."),
    (r"layers\.(\d+)\.classwise\.mlp\.fc2\.", _AGG + r"layers.\1.attention.MLP.2."),
    (r"layers\.(\d+)\.classwise\.", _AGG + r"layers.\1.attention."),
    (r"decoder\.guidance_projections\.(\d)\.", _AGG + r"decoder_guidance_projection.\1.0."),
    (r"decoder\.guidance_upsamplers\.0\.", "upsample1."),
    (r"decoder\.guidance_upsamplers\.1\.", "upsample2."),
    (r"decoder\.stages\.0\.up\.", _AGG + "decoder1.up."),
    (r"decoder\.stages\.1\.up\.", _AGG + "decoder2.up."),
    (r"decoder\.predictor\.", _AGG + "head."),
]
for stage in (0, 1):
    for ours, index in (("conv1", 0), ("norm1", 1), ("conv2", 3), ("norm2", 4)):
        _TO_CATSEG.append((rf"decoder\.stages\.{stage}\.{ours}\.",
                           f"{_AGG}decoder{stage + 1}.conv.double_conv.{index}."))


def to_catseg_layout(state_dict):
    """AHS-Seg state dict -> what CAT-Seg's ``model.state_dict()`` holds for the same weights."""
    out, packed_bias = {}, {}
    for key, value in state_dict.items():
        if key.startswith("backbone.clip."):
            key = "sem_seg_head.predictor.clip_model." + key[len("backbone.clip."):]
            match = re.match(r"(.*\.attn)\.([qkv])_proj\.(weight|bias)$", key)
            if match and match[3] == "weight":
                key = f"{match[1]}.{match[2]}_proj_weight"
            elif match:
                packed_bias.setdefault(match[1], {})[match[2]] = value
                continue
            out[key] = value
            continue
        name = key[len("sem_seg_head."):]
        for pattern, replacement in _TO_CATSEG:
            if re.match(pattern, name):
                out[re.sub(pattern, replacement, name, count=1)] = value
                break
        else:
            raise AssertionError(f"no CAT-Seg name for {key}")
    for prefix, parts in packed_bias.items():
        out[prefix + ".in_proj_bias"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    # CAT-Seg also saves the shifted-window masks as buffers.
    out[_AGG + "layers.0.swin_block.block_2.attn_mask"] = torch.zeros(1, 16, 16)
    return out


def tiny_model(seed):
    cfg = make_cfg()
    cfg.merge_from_other_cfg(cfg.load_cfg(TINY_YAML))
    torch.manual_seed(seed)
    model = AHSSeg(cfg)
    with torch.no_grad():  # non-trivial values everywhere, padding tokens included
        for p in model.sem_seg_head.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    return model.eval()


def write_catseg_checkpoint(path, seed: int = 0):
    """Write a tiny model (:func:`tiny_model`) as CAT-Seg would save it; returns the model."""
    model = tiny_model(seed)
    torch.save({"model": to_catseg_layout(model.state_dict()), "iteration": 80000}, path)
    return model
