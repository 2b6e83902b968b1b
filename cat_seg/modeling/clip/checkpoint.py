"""Where CLIP's weights come from and how a checkpoint becomes the backbone's state dict.

``MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS`` is one of

* ``"random"``: open_clip's initialisation (tests, cost analysis);
* a local file: an open_clip / OpenAI-layout state dict (``torch.save``, read with
  ``weights_only=True``; ``.safetensors``; optionally wrapped as ``{"state_dict": ...}`` and/or with a
  ``module.`` prefix), or OpenAI's ``.pt`` TorchScript archive as distributed;
* an open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b88k"``, ...): downloaded through open_clip
  (or taken from its cache). Without network the error says which file to fetch and how to pass it.

Attention weights are accepted in three layouts and stored split (``attn.q_proj.weight`` ...):
packed (OpenAI / open_clip: ``attn.in_proj_weight`` (3W, W), ``attn.in_proj_bias`` (3W)), CAT-Seg's
(``attn.q_proj_weight`` ..., packed ``attn.in_proj_bias``) and the backbone's own.
"""
import os
import zipfile
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from ...utils.paths import resolve_repo_path
from ...utils.state_dicts import KeyDiff, is_tensor_mapping, load_weights_only
from .architectures import CLIPArchitecture

RANDOM_WEIGHTS = "random"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
# Entries of OpenAI's TorchScript archives that are hyper-parameters, not weights.
_OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
_QKV = ("q", "k", "v")


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights are and what they imply about the model around them.

    ``path``: local checkpoint file, None for a random initialisation; ``quick_gelu``: the weights
    were trained with QuickGELU (OpenAI's archives, open_clip tags that say so); ``mean`` / ``std``:
    the per-channel pixel normalisation (0–1 scale) they were trained with.
    """

    path: Optional[str]
    quick_gelu: bool = False
    mean: Tuple[float, ...] = OPENAI_DATASET_MEAN
    std: Tuple[float, ...] = OPENAI_DATASET_STD


def check_clip_weights_path(weights: str) -> None:
    """Raise (one line, naming the key and the fix) when ``MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS``
    names a file that is absent or a folder: a value with a path separator or a checkpoint
    suffix, or one that exists on disk. ``random`` and open_clip tags pass (checked when the
    model is built); so does a file."""
    if weights == RANDOM_WEIGHTS or not weights:
        return
    path = resolve_repo_path(weights)
    if os.path.isfile(path):
        return
    fix = "pass a checkpoint file, an open_clip pretrained tag such as 'openai', or 'random'"
    if os.path.isdir(path):
        raise IsADirectoryError(f"CLIP checkpoint {weights} (MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS) is "
                                f"a folder, not a file; {fix}")
    if os.sep in path or path.endswith(_CHECKPOINT_SUFFIXES):
        raise FileNotFoundError(f"CLIP checkpoint file not found: {weights!r} "
                                f"(MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS) does not exist; {fix}")


def resolve_weights(architecture: CLIPArchitecture, weights: str) -> WeightsSource:
    """Resolve ``MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS`` for ``architecture`` (downloads a tag if needed)."""
    if weights == RANDOM_WEIGHTS:
        return WeightsSource(None)
    # A shipped file named relative to the repository (pretrained/...) is found from any folder.
    weights = resolve_repo_path(weights)
    if os.path.isfile(weights):
        return WeightsSource(weights, quick_gelu=is_torchscript_archive(weights))
    check_clip_weights_path(weights)
    name = architecture.open_clip_name
    if name is None:
        raise ValueError(
            f"{architecture.name!r} has no published weights: set MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS to "
            f"'random' or to a local checkpoint file, not {weights!r}."
        )
    pretrained = open_clip.get_pretrained_cfg(name, weights)
    if not pretrained:
        raise ValueError(
            f"Unknown CLIP weights {weights!r} for {architecture.name!r} (MODEL.SEM_SEG_HEAD."
            f"CLIP_WEIGHTS): not a file, 'random', nor one of open_clip's pretrained tags for "
            f"{name!r}: {open_clip.list_pretrained_tags_by_model(name)}."
        )
    try:
        path = open_clip.download_pretrained(pretrained)
    except Exception as error:  # any download failure (no network, hub errors) gets the same advice
        sources = [s for s in (pretrained.get("url"), pretrained.get("hf_hub")) if s]
        where = " or ".join(
            s if s.startswith("http") else f"https://huggingface.co/{s.rstrip('/')}" for s in sources)
        raise RuntimeError(
            f"Could not download the {weights!r} weights of {name!r} ({type(error).__name__}: "
            f"{error}); no network? Download the checkpoint elsewhere ({where}), copy it here and set "
            f"MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS to its local path (OpenAI's .pt archive and open_clip's "
            f".bin/.safetensors files are both accepted)."
        ) from error
    if not path:
        raise RuntimeError(f"open_clip returned no file for the {weights!r} weights of {name!r}")
    return WeightsSource(
        path,
        quick_gelu=bool(pretrained.get("quick_gelu", False)),
        mean=tuple(pretrained.get("mean", OPENAI_DATASET_MEAN)),
        std=tuple(pretrained.get("std", OPENAI_DATASET_STD)),
    )


def is_torchscript_archive(path: str) -> bool:
    """TorchScript archives are zip files with serialized ``code/``; ``torch.save`` files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in entry or entry.startswith("code/") for entry in archive.namelist())


def read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The state dict stored in ``path`` (see the module docstring for the accepted formats)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        checkpoint = load_file(path, device="cpu")
    elif is_torchscript_archive(path):
        # OpenAI's distributed CLIP: a TorchScript module whose state dict is the OpenAI layout.
        checkpoint = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        try:
            checkpoint = load_weights_only(path)
        except Exception as error:
            raise ValueError(
                f"Could not read {path!r} as a CLIP state dict ({type(error).__name__}: {error}). "
                f"Expected an open_clip/OpenAI state dict, a .safetensors file or OpenAI's .pt archive."
            ) from error
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not is_tensor_mapping(checkpoint):
        raise ValueError(
            f"{path!r} does not hold a CLIP state dict (a mapping of tensors); a full training "
            f"checkpoint must be converted first (e.g. CAT-Seg's: extract its CLIP weights)."
        )
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v
                  for k, v in checkpoint.items()}
    for key in _OPENAI_METADATA_KEYS:
        state_dict.pop(key, None)
    return state_dict


def convert_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An OpenAI / open_clip / CAT-Seg CLIP state dict with its attention weights split.

    ``….attn.in_proj_weight`` -> ``….attn.{q,k,v}_proj.weight``; ``….attn.in_proj_bias`` ->
    ``….attn.{q,k,v}_proj.bias``; CAT-Seg's ``….attn.{q,k,v}_proj_weight`` ->
    ``….attn.{q,k,v}_proj.weight``. Every other key is kept as is.
    """
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".attn.")
        if not prefix:
            converted[key] = value
        elif leaf in ("in_proj_weight", "in_proj_bias"):
            kind = "weight" if leaf == "in_proj_weight" else "bias"
            for name, part in zip(_QKV, value.chunk(3, dim=0)):
                converted[f"{prefix}.attn.{name}_proj.{kind}"] = part
        elif leaf in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            converted[f"{prefix}.attn.{leaf[0]}_proj.weight"] = value
        else:
            converted[key] = value
    return converted


def load_clip_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy a converted checkpoint into ``model`` (open_clip CLIP with split attention), all keys.

    Fails listing the missing, unexpected and wrongly shaped keys when the checkpoint is of
    another architecture.
    """
    diff = KeyDiff.between(model.state_dict(), state_dict)
    if diff:
        raise ValueError(
            f"The CLIP checkpoint {source!r} does not match the configured architecture "
            f"(MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED); pick the architecture it was saved from."
            + diff.listing()
        )
    model.load_state_dict(state_dict, strict=True)
