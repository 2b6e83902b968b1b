"""Official CAT-Seg checkpoints (cvlab-kaist/CAT-Seg) in AHS-Seg's state-dict layout: the
conversion behind ``ahs-seg convert`` (cat_seg/cli/convert.py, whose docstring describes both
layouts).

:func:`load_catseg_checkpoint` reads one safely (``torch.load(weights_only=True)``),
:func:`convert_catseg_state_dict` renames CLIP and the head, :func:`check_against_config` loads
the result strictly into a config's model, and :func:`fetch_ahs_weights` turns any weights
source (file, URL, ``hf://``; :mod:`cat_seg.utils.download`) into a local file in AHS-Seg's
layout, converting an official checkpoint once into the cache.
"""
import logging
import os
import pickle
import re
import zipfile
from typing import Dict, List, Mapping, Tuple

import torch

from ..modeling.clip import convert_clip_state_dict
from ..utils.download import cache_dir, fetch_weights, forget, in_cache, sha256_of
from ..utils.state_dicts import (CATSEG_AGGREGATOR_PREFIX, CATSEG_CLIP_PREFIX, CATSEG_PREFIXES,
                                 KeyDiff, is_tensor_mapping, load_weights_only)

logger = logging.getLogger(__name__)

BACKBONE_CLIP_PREFIX = "backbone.clip."
HEAD_PREFIX = "sem_seg_head."

# CAT-Seg name (after "sem_seg_head.predictor.transformer." or, for the upsamplers, at the top
# level) -> name inside AHS-Seg's CATSegHead. First matching rule wins.
_AGGREGATOR = re.escape(CATSEG_AGGREGATOR_PREFIX)
_HEAD_RULES: List[Tuple[str, str]] = [
    (_AGGREGATOR + r"conv1\.", "cost_embed."),
    (_AGGREGATOR + r"guidance_projection\.0\.", "appearance_guidance_proj."),
    (_AGGREGATOR + r"text_guidance_projection\.0\.", "text_guidance_proj."),
    (_AGGREGATOR + r"layers\.(\d+)\.swin_block\.block_1\.", r"layers.\1.spatial.blocks.0."),
    (_AGGREGATOR + r"layers\.(\d+)\.swin_block\.block_2\.", r"layers.\1.spatial.blocks.1."),
    (_AGGREGATOR + r"layers\.(\d+)\.swin_block\.guidance_norm\.",
     r"layers.\1.spatial.guidance_norm."),
    (_AGGREGATOR + r"layers\.(\d+)\.attention\.attention\.", r"layers.\1.classwise.attn."),
    (_AGGREGATOR + r"layers\.(\d+)\.attention\.MLP\.0\.", r"layers.\1.classwise.mlp.fc1."),
    (_AGGREGATOR + r"layers\.(\d+)\.attention\.MLP\.2\.", r"layers.\1.classwise.mlp.fc2."),
    (_AGGREGATOR + r"layers\.(\d+)\.attention\.(norm1|norm2|padding_tokens|padding_guidance)",
     r"layers.\1.classwise.\2"),
    (_AGGREGATOR + r"decoder_guidance_projection\.(\d+)\.0\.",
     r"decoder.guidance_projections.\1."),
    (_AGGREGATOR + r"decoder(\d)\.up\.", lambda m: f"decoder.stages.{int(m[1]) - 1}.up."),
    (_AGGREGATOR + r"decoder(\d)\.conv\.double_conv\.(\d)\.",
     lambda m: f"decoder.stages.{int(m[1]) - 1}."
               f"{ {'0': 'conv1', '1': 'norm1', '3': 'conv2', '4': 'norm2'}[m[2]] }."),
    (_AGGREGATOR + r"head\.", "decoder.predictor."),
    (r"upsample(\d)\.", lambda m: f"decoder.guidance_upsamplers.{int(m[1]) - 1}."),
]
# Buffers CAT-Seg saves that AHS-Seg derives (the shifted-window attention masks).
_DERIVED = re.compile(r".*\.attn_mask$")


class ConversionError(ValueError):
    """The input is not an official CAT-Seg checkpoint this converter understands."""


def load_catseg_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The ``model`` state dict of a CAT-Seg checkpoint, read without running pickled code."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        checkpoint = load_weights_only(path)
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        # torch.load's words for a file cut short: "PytorchStreamReader failed reading zip
        # archive", "Ran out of input"...
        reason = str(error).splitlines()[0].split(". ")[0]
        raise ConversionError(
            f"{path!r} is not a complete checkpoint file ({reason}): a truncated or corrupt "
            "download? Delete it and download it again") from None
    except pickle.UnpicklingError as error:
        raise ConversionError(
            f"{path!r} holds Python objects other than tensors and plain containers, which "
            "could run code when loaded, so it is refused (torch.load weights_only=True: "
            f"{str(error).splitlines()[0]}). Convert only files from a source you trust; if you "
            "do trust it, re-save just its state dict: "
            "torch.save({'model': torch.load(f, weights_only=False)['model']}, g)") from error
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not is_tensor_mapping(state_dict):
        raise ConversionError(f"{path!r} is not a detectron2 checkpoint: expected a dict whose "
                              "'model' entry maps parameter names to tensors")
    return dict(state_dict)


def _head_name(key: str) -> str:
    for pattern, replacement in _HEAD_RULES:
        match = re.match(pattern, key)
        if match:
            suffix = key[match.end():]
            target = replacement(match) if callable(replacement) else match.expand(replacement)
            return HEAD_PREFIX + target + suffix
    return ""


def convert_catseg_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CAT-Seg's meta-architecture state dict -> AHSSeg's (``backbone.clip.*``, ``sem_seg_head.*``).

    Tensors are kept as they are (float32 copies); only names change, and CLIP's q/k/v layout.
    """
    clip: Dict[str, torch.Tensor] = {}
    converted: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(CATSEG_CLIP_PREFIX):
            clip[key[len(CATSEG_CLIP_PREFIX):]] = value
        elif _DERIVED.match(key):
            continue
        else:
            name = _head_name(key)
            if name:
                converted[name] = value
            else:
                unknown.append(key)
    if unknown:
        hint = (" It looks like an H-CLIP (OFT) checkpoint, which this converter does not handle."
                if any("oft" in k for k in unknown) else "")
        raise ConversionError(
            f"{len(unknown)} entries are not part of CAT-Seg's model (e.g. {unknown[:5]}); "
            f"expected an official CAT-Seg checkpoint.{hint}")
    prompts = [k for k in clip if "prompt" in k]
    if prompts:
        raise ConversionError(f"the checkpoint has CLIP prompt tokens ({prompts[:3]}): it was "
                              "trained with CAT-Seg's visual prompt tuning, which AHS-Seg lacks")
    if not clip:
        raise ConversionError(f"no CLIP weights under {CATSEG_CLIP_PREFIX!r}: not a CAT-Seg "
                              "checkpoint")
    for key, value in convert_clip_state_dict(clip).items():
        converted[BACKBONE_CLIP_PREFIX + key] = value
    return {k: v.detach().float().clone() if v.is_floating_point() else v.clone()
            for k, v in converted.items()}


def check_against_config(state_dict: Mapping[str, torch.Tensor], config_file: str) -> None:
    """Build the model of ``config_file`` (random CLIP weights) and load ``state_dict`` strictly.

    The config is built as every entry point builds it (:func:`cat_seg.config.build_config`,
    validated), except that it need not name a dataset: only its model is built.
    """
    from ..ahs_seg_model import AHSSeg
    from ..config import build_config

    cfg = build_config(config_file, ["MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS", "random"], needs_data=False)
    diff = KeyDiff.between(AHSSeg(cfg).state_dict(), state_dict).sorted()
    if diff:
        raise ConversionError(
            f"the converted weights do not fit {config_file}: {diff.brief()}; pick the config "
            "of the checkpoint's CLIP (ViT-B/16: configs/vitb_384_catseg.yaml, ViT-L/14@336px: "
            "configs/vitl_336_catseg.yaml)")


def load_downloaded_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """:func:`load_catseg_checkpoint` of a file :func:`fetch_weights` returned; a cached download
    that turns out unreadable is removed from the cache, so the next run downloads it again."""
    try:
        return load_catseg_checkpoint(path)
    except ConversionError as error:
        if not in_cache(path):
            raise
        forget(path)
        raise ConversionError(f"{error} (removed from the cache: run the command again to "
                              "download it anew)") from None


def is_catseg_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is in CAT-Seg's layout (its CLIP or aggregator prefixes)."""
    return any(key.startswith(CATSEG_PREFIXES) for key in state_dict)


def save_converted(state_dict: Mapping[str, torch.Tensor], path: str) -> None:
    """Write ``{"model": state_dict}`` to ``path`` through a temporary name (never half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.part.{os.getpid()}"
    try:
        torch.save({"model": dict(state_dict)}, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def fetch_ahs_weights(source: str, sha256=None, *, progress: bool = True) -> str:
    """A local file of AHS-Seg weights for ``source`` (a path, an http(s) URL or
    ``hf://owner/name/file``; :func:`cat_seg.utils.download.fetch_weights`, checked against
    ``sha256`` when given). An official CAT-Seg checkpoint is converted once, into
    ``<cache>/converted/<its sha256>.pth``; a checkpoint already in AHS-Seg's layout is returned
    as it is. What ``MODEL.WEIGHTS`` and the predictor's weights accept."""
    path = fetch_weights(source, sha256, progress=progress)
    state_dict = load_downloaded_checkpoint(path)
    if not is_catseg_state_dict(state_dict):
        return path
    converted_path = os.path.join(cache_dir(), "converted", f"{sha256_of(path)}.pth")
    if not os.path.isfile(converted_path):
        save_converted(convert_catseg_state_dict(state_dict), converted_path)
        logger.info("converted the CAT-Seg checkpoint %s -> %s", path, converted_path)
    return converted_path
