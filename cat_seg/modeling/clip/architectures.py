"""The CLIP architectures the backbone can build, by name.

Three kinds of names are accepted for ``MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED``:

* CAT-Seg's / OpenAI's names (``"ViT-B/16"``, ``"ViT-L/14@336px"``, ...). They denote OpenAI's CLIP,
  which was trained with QuickGELU, and map to the open_clip configuration of the same shape.
* open_clip names (``"ViT-B-16"``, ``"ViT-L-14-336"``, ...), restricted to plain CLIP ViTs: a class
  token, one pre-norm attention + MLP block per layer, OpenAI's BPE tokenizer, causal text
  transformer pooled at the end-of-text token. Everything the backbone's own forward passes compute.
* ``"AHS-Tiny/16"``: a tiny CLIP for tests and the CPU quick start (random or locally saved weights):
  patch 16 at a native 224 px (14 x 14 grid), vision width 128 x 4 layers (2 heads), text width
  128 x 2 layers (2 heads), joint embedding 64, OpenAI's 49,408-token vocabulary and 77-token context,
  QuickGELU. Its widths are divisible by the OFT block sizes 32, 64 and 128.
"""
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

import open_clip
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

# OpenAI's (and CAT-Seg's) names -> open_clip configuration of the same architecture.
OPENAI_NAMES: Dict[str, str] = {
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
}

TINY_NAME = "AHS-Tiny/16"
_TINY_CONFIG: Dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 4, "width": 128, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}

# The size of OpenAI's BPE vocabulary, the only tokenizer the text encoder uses.
OPENAI_VOCAB_SIZE = 49408
_TOP_LEVEL_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale",
                   "custom_text"}


@dataclass(frozen=True)
class CLIPArchitecture:
    """A resolved architecture: the open_clip model configuration plus the facts the backbone needs.

    ``config`` is the keyword set of ``open_clip.model.CLIP(embed_dim, vision_cfg, text_cfg)``;
    ``quick_gelu`` whether the MLPs use QuickGELU (OpenAI's activation) instead of GELU.
    """

    name: str
    open_clip_name: Optional[str]
    config: Dict[str, Any]
    quick_gelu: bool

    @property
    def vision_cfg(self) -> CLIPVisionCfg:
        return CLIPVisionCfg(**self.config["vision_cfg"])

    @property
    def text_cfg(self) -> CLIPTextCfg:
        return CLIPTextCfg(**self.config["text_cfg"])

    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    @property
    def native_resolution(self) -> int:
        return int(self.vision_cfg.image_size)

    @property
    def patch_size(self) -> int:
        return int(self.vision_cfg.patch_size)


def unsupported_features(config: Dict[str, Any]) -> List[str]:
    """What in an open_clip model configuration the backbone's forward passes do not implement.

    Returns an empty list for a plain CLIP ViT (see the module docstring).
    """
    problems = [f"top-level option {k!r}" for k in config if k not in _TOP_LEVEL_KEYS]
    if config.get("custom_text"):
        problems.append("custom text tower (custom_text=True)")
    try:
        vision = CLIPVisionCfg(**config.get("vision_cfg", {}))
        text = CLIPTextCfg(**config.get("text_cfg", {}))
    except TypeError as error:
        return problems + [f"unknown tower option ({error})"]

    def differing(cfg: Any, allowed: Dict[str, Tuple[Any, ...]], tower: str) -> List[str]:
        return [
            f"{tower} {f.name}={getattr(cfg, f.name)!r}"
            for f in fields(cfg)
            if f.name in allowed and getattr(cfg, f.name) not in allowed[f.name]
        ]

    custom_block = {k: (False,) for k in ("qk_norm", "scaled_cosine_attn", "scale_heads",
                                          "scale_attn_inner", "scale_attn", "scale_fc")}
    problems += differing(vision, {
        "timm_model_name": (None,), "attentional_pool": (False,), "block_type": (None, "default"),
        **custom_block}, "vision")
    if not isinstance(vision.layers, int):
        problems.append("vision tower is a ResNet (only ViTs have patch tokens)")
    elif not isinstance(vision.image_size, int) or not isinstance(vision.patch_size, int):
        problems.append("non-square vision image or patch size")
    problems += differing(text, {
        "hf_model_name": (None,), "hf_tokenizer_name": (None,), "tokenizer_mode": (None,),
        "tokenizer_kwargs": (None,), "embed_cls": (False,), "no_causal_mask": (False,),
        "pool_type": ("argmax",), "proj_type": ("linear",), "proj_bias": (False,),
        "vocab_size": (OPENAI_VOCAB_SIZE,), "block_type": (None, "default"), **custom_block}, "text")
    return problems


@lru_cache(maxsize=1)
def supported_open_clip_names() -> Tuple[str, ...]:
    """open_clip model names whose configuration the backbone supports."""
    return tuple(
        name for name in open_clip.list_models()
        if not unsupported_features(open_clip.get_model_config(name) or {"unknown": True})
    )


def resolve_architecture(name: str) -> CLIPArchitecture:
    """Map a ``CLIP_PRETRAINED`` name to its architecture, or fail naming the known ones."""
    if name == TINY_NAME:
        return CLIPArchitecture(name, None, _TINY_CONFIG, quick_gelu=True)
    open_clip_name = OPENAI_NAMES.get(name, name)
    config = open_clip.get_model_config(open_clip_name)
    if config is None:
        raise ValueError(
            f"Unknown CLIP architecture {name!r} (MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED). Known names: "
            f"{TINY_NAME!r} (tiny, for tests), OpenAI/CAT-Seg names {list(OPENAI_NAMES)}, and the "
            f"open_clip names {list(supported_open_clip_names())}."
        )
    problems = unsupported_features(config)
    if problems:
        raise ValueError(
            f"CLIP architecture {name!r} is an open_clip model the AHS-Seg backbone does not "
            f"support: {'; '.join(problems)}. Use a plain CLIP ViT such as 'ViT-B/16' or "
            f"'ViT-L/14@336px'."
        )
    # OpenAI's models were trained with QuickGELU; open_clip marks its own QuickGELU variants.
    quick_gelu = name in OPENAI_NAMES or bool(config.get("quick_gelu", False))
    return CLIPArchitecture(name, open_clip_name, config, quick_gelu=quick_gelu)
