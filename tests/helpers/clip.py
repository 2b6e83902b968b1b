"""The tiny CLIP backbone of the ``test_clip_*`` / ``test_oft`` / ``test_text_encoder`` files, its
inputs, adapter perturbation and the OpenAI-layout export of its weights."""
from typing import Dict

import torch

from cat_seg.modeling.clip import CLIPBackbone

TINY = "AHS-Tiny/16"


def tiny_backbone(seed: int = 0, **overrides) -> CLIPBackbone:
    """AHS-Tiny/16 with random weights at 96 px (6 x 6 grid, so positional embeddings are resized)."""
    torch.manual_seed(seed)
    kwargs = dict(architecture=TINY, weights="random", resolution=96, guidance_layers=(1, 2),
                  finetune="oft_both", oft_block_size=32)
    kwargs.update(overrides)
    return CLIPBackbone(**kwargs)


def perturb_adapter(backbone: CLIPBackbone, scale: float = 0.05, seed: int = 1) -> None:
    """Move every adapter parameter away from its identity initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in backbone.adapter.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def random_images(backbone: CLIPBackbone, batch: int = 2, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, backbone.resolution, backbone.resolution, generator=generator)


def openai_layout(split_state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The backbone's ``clip.*`` state dict in OpenAI / open_clip layout (packed in-projection)."""
    packed: Dict[str, torch.Tensor] = {}
    for key, value in split_state_dict.items():
        prefix, _, leaf = key.rpartition(".attn.")
        if prefix and leaf.split(".")[0] in ("q_proj", "k_proj", "v_proj"):
            kind = leaf.split(".")[1]
            if leaf.startswith("q_proj"):
                parts = [split_state_dict[f"{prefix}.attn.{n}_proj.{kind}"] for n in "qkv"]
                packed[f"{prefix}.attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
        else:
            packed[key] = value
    return packed
