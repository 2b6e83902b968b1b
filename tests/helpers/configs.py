"""Configs for tests: detectron2's defaults + AHS-Seg's keys, and the tiny model's YAML file."""
from typing import Mapping, Optional, Sequence, Union

from detectron2.config import CfgNode, get_cfg

from cat_seg.config import add_ahs_config


def make_cfg(config_file: Optional[str] = None,
             opts: Union[Sequence, Mapping] = (), **keys) -> CfgNode:
    """A *mutable*, unvalidated config: detectron2's defaults + AHS-Seg's keys, then
    ``config_file`` (with its ``_BASE_`` chain), then ``opts`` (``[KEY, VALUE, ...]`` or
    ``{KEY: VALUE}``), then ``keys`` (``MODEL__DEVICE="cpu"`` for ``MODEL.DEVICE``). Values go
    through yacs' ``merge_from_list`` (unknown keys and type mismatches raise), and may be Python
    values (tuples, bools, numbers) as well as strings.

    Unlike :func:`cat_seg.config.build_config` (what the entry points run with) the result is not
    frozen and not passed through ``check_config``: tests set keys on it afterwards, or hand
    ``check_config`` a bad value on purpose."""
    cfg = get_cfg()
    add_ahs_config(cfg)
    if config_file is not None:
        cfg.merge_from_file(str(config_file))
    if isinstance(opts, Mapping):
        opts = [item for pair in opts.items() for item in pair]
    cfg.merge_from_list(list(opts))
    cfg.merge_from_list([item for key, value in keys.items()
                         for item in (key.replace("__", "."), value)])
    return cfg


# A tiny AHS-Seg (AHS-Tiny/16 CLIP at 64 px = a 4x4 grid, a one-layer narrow head) that trains on
# the synthetic dataset's 16 classes: each forward takes a fraction of a second on a CPU core.
TINY_CONFIG = """
MODEL:
  META_ARCHITECTURE: "AHSSeg"
  DEVICE: "cpu"
  SEM_SEG_HEAD:
    NAME: "CATSegHead"
    CLIP_PRETRAINED: "AHS-Tiny/16"
    CLIP_WEIGHTS: "random"
    CLIP_RESOLUTION: {resolution}
    CLIP_GUIDANCE_LAYERS: [1, 2]
    CLIP_FINETUNE: "oft_both"
    OFT_BLOCK_SIZE: 32
    HIDDEN_DIMS: 32
    DECODER_DIMS: [32, 16]
    DECODER_GUIDANCE_DIMS: [16, 8]
    DECODER_GUIDANCE_PROJ_DIMS: [8, 4]
    NUM_LAYERS: 1
    NUM_HEADS: 2
    TEXT_GUIDANCE_PROJ_DIM: 16
    APPEARANCE_GUIDANCE_PROJ_DIM: 16
    WINDOW_SIZES: {window}
    CLASS_PAD_LEN: 0
{modules}
DATASETS:
  TRAIN: ("synthetic_seen_train",)
  TEST: ("synthetic_seen_val",)
INPUT:
  FORMAT: "RGB"
  MIN_SIZE_TEST: {resolution}
  MAX_SIZE_TEST: 1000
  CROP:
    ENABLED: False
SOLVER:
  BASE_LR: 0.0001
  MAX_ITER: 10
  IMS_PER_BATCH: 1
"""


def write_tiny_config(path, resolution=64, window=2, modules=()):
    """Write the tiny config to ``path``: CLIP input ``resolution`` (a multiple of 16), Swin
    ``window`` (divides resolution / 16); ``modules``: AHS switches to turn on, e.g. ("AFR",)."""
    switches = {"HPA": "USE_PROTOTYPE_ALIGNMENT", "SDR": "USE_SELF_DISTILLATION",
                "AFR": "USE_FEATURE_RECTIFICATION"}
    lines = "\n".join(f"    {switches[m]}: True" for m in modules)
    with open(path, "w") as f:
        f.write(TINY_CONFIG.format(resolution=resolution, window=window, modules=lines))
    return str(path)
