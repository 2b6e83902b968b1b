"""Every AHS-Seg config key, its default and its meaning (the AHS modules' own keys: in each
module's ``add_config``, which ``add_ahs_config`` calls).

``add_ahs_config(cfg)`` extends detectron2's default config (``detectron2.config.get_cfg()``).
YAML files under ``configs/`` inherit from each other with ``_BASE_``. Keys that a module needs
but that can be derived from another part of the model (e.g. the CLIP width) are not keys: they are
read off the built model, so they can never disagree with it.
"""
from typing import Sequence

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .config_checks import check_config
from .modeling.hyperspherical import add_ahs_module_configs
from .utils.paths import require_file, resolve_repo_path

# What to give instead of a config file that is absent or a folder.
CONFIG_FILE_FIX = ("give a YAML file: configs/ lists the shipped ones, a run saved its own as "
                   "OUTPUT_DIR/config.yaml")


def add_ahs_config(cfg: CN) -> None:
    """Add AHS-Seg's keys (CAT-Seg head, H-CLIP backbone, HPA/SDR/AFR, data, test protocol)."""
    # ------------------------------------------------------------------ data / input
    # Photometric distortion of SSD (brightness, contrast, saturation, hue) during training.
    cfg.INPUT.COLOR_AUG_SSD = True
    # Random crop retries until no single category covers more than this fraction of the crop.
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    # Pad training images (and labels, with the ignore value) to a multiple of this; -1: off.
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    # Channel order of the mapper's images; CLIP needs "RGB" (the only accepted value;
    # detectron2's default is "BGR").
    cfg.INPUT.FORMAT = "RGB"
    # Test-time shortest edge and longest-edge cap (the benchmarks' protocol: 640, 2560).
    cfg.INPUT.MIN_SIZE_TEST = 640
    cfg.INPUT.MAX_SIZE_TEST = 2560
    # Datasets of your own: YAML/JSON files, each describing an image folder, a label folder and
    # a class list (docs/custom_datasets.md). They are registered when a run starts, so their
    # names work in DATASETS.TRAIN / TEST and their benchmark names in TEST.BENCHMARKS.
    cfg.DATASETS.FOLDER_DATASETS = []

    # ------------------------------------------------------------------ solver
    # "ADAMW" or "SGD".
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    # Learning-rate factor of the CLIP parameters that train (adapters, or q/v projections).
    cfg.SOLVER.CLIP_MULTIPLIER = 0.01
    # Weight decay of positional / class / padding embeddings (norms and biases always get 0).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    # Gradient clipping over the whole model at once ("full_model"), besides detectron2's
    # per-parameter "value" / "norm" types.
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    # Autocast precision when SOLVER.AMP.ENABLED: "bfloat16" (CPU or GPU) or "float16" (GPU,
    # with a gradient scaler).
    cfg.SOLVER.AMP.PRECISION = "bfloat16"
    # "auto": CUDA when a GPU is visible, else CPU. Any torch device string also works.
    cfg.MODEL.DEVICE = "auto"
    # Loading MODEL.WEIGHTS for evaluation, the demo or --resume: weights in the file that the
    # model does not have (a checkpoint of another config) stop with an error unless True; then
    # they are dropped, logged, and recorded in eval_ahs.sh's results.json. Fine-tuning from
    # MODEL.WEIGHTS (training without --resume) always drops them with a warning, as detectron2.
    cfg.MODEL.ALLOW_UNEXPECTED_WEIGHTS = False

    # ------------------------------------------------------------------ model: CLIP backbone
    cfg.MODEL.META_ARCHITECTURE = "AHSSeg"
    # CLIP architecture: CAT-Seg's names ("ViT-B/16", "ViT-L/14@336px"), plain-ViT open_clip names
    # ("ViT-B-16", ...) or "AHS-Tiny/16" (tiny, for tests and the CPU quick start).
    cfg.MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED = "ViT-B/16"
    # CLIP weights: an open_clip pretrained tag ("openai", needs network or open_clip's cache), a
    # local checkpoint file (OpenAI's .pt archive, open_clip .bin/.pt/.safetensors), or "random".
    cfg.MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS = "openai"
    # Input side of the CLIP image encoder (positional embeddings resized bicubically to its grid;
    # CAT-Seg: 384 for ViT-B/16, 336 for ViT-L/14@336px).
    cfg.MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION = 384
    # Vision blocks whose tokens guide the decoder (3, 7 for ViT-B; 7, 15 for ViT-L).
    cfg.MODEL.SEM_SEG_HEAD.CLIP_GUIDANCE_LAYERS = [3, 7]
    # What of CLIP trains: "oft_both" (H-CLIP adapters), "attention" (CAT-Seg q/v), "full" (every
    # CLIP weight: CAT-Seg's fine-tune-all ablation), "frozen".
    cfg.MODEL.SEM_SEG_HEAD.CLIP_FINETUNE = "oft_both"
    # Block size of the block-diagonal OFT adapters ("oft_both"; must divide both encoder widths).
    cfg.MODEL.SEM_SEG_HEAD.OFT_BLOCK_SIZE = 128
    # Cayley-parametrise the vision adapters too ("oft_both"; H-CLIP: text only, vision free).
    cfg.MODEL.SEM_SEG_HEAD.OFT_VISION_CAYLEY = False
    # Prompt templates: "single" ("A photo of a {} in the scene") or "imagenet" (80 templates).
    cfg.MODEL.SEM_SEG_HEAD.PROMPT_ENSEMBLE_TYPE = "single"
    # Training memory: what each CLIP block keeps for the backward pass (activation
    # checkpointing; same gradients): "none" (everything), "selective" (the outputs of matrix
    # products and attention; norms, activations, additions are recomputed) or "full" (the
    # block's input; about one more CLIP forward). docs/benchmarks.md gives the costs.
    cfg.MODEL.SEM_SEG_HEAD.CLIP_ACTIVATION_CHECKPOINTING = "none"

    # ------------------------------------------------------------------ model: CAT-Seg head
    # Registered name of the segmentation head (built with the CLIP backbone's dimensions):
    # "CATSegHead" (cost aggregation; the keys below configure it) or "PatchTextMatchingHead"
    # (the one-stage feature-matching baseline of ZegCLIP / CAT-Seg's motivation figure: the scaled
    # patch-text cosine of CLIP's features after a learned projection; it reads none of the keys
    # below, cat_seg/modeling/head/patch_text_matching_head.py).
    cfg.MODEL.SEM_SEG_HEAD.NAME = "CATSegHead"
    # Label of unlabelled pixels (target 0 for every class in the loss, as in CAT-Seg).
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    # Images of a batch are zero-padded (after CLIP normalisation) to a common size that is a
    # multiple of this, then resized to CLIP_RESOLUTION (CAT-Seg: 32).
    cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY = 32
    # Projections of text / appearance guidance in the aggregator.
    cfg.MODEL.SEM_SEG_HEAD.TEXT_GUIDANCE_PROJ_DIM = 128
    cfg.MODEL.SEM_SEG_HEAD.APPEARANCE_GUIDANCE_PROJ_DIM = 128
    # Decoder: channel widths of the two upsampling stages, of the upsampled CLIP guidance,
    # and of its projections.
    cfg.MODEL.SEM_SEG_HEAD.DECODER_DIMS = [64, 32]
    cfg.MODEL.SEM_SEG_HEAD.DECODER_GUIDANCE_DIMS = [256, 128]
    cfg.MODEL.SEM_SEG_HEAD.DECODER_GUIDANCE_PROJ_DIMS = [32, 16]
    # Aggregator: number of (spatial + class) aggregation layers, heads, hidden width.
    cfg.MODEL.SEM_SEG_HEAD.NUM_LAYERS = 2
    cfg.MODEL.SEM_SEG_HEAD.NUM_HEADS = 4
    cfg.MODEL.SEM_SEG_HEAD.HIDDEN_DIMS = 128
    # Average pooling (h, w) of the cost features before class aggregation, whose update is
    # upsampled back to the full grid; pooling only saves compute (train [2, 2], test [1, 1]).
    cfg.MODEL.SEM_SEG_HEAD.POOLING_SIZES = [2, 2]
    # Swin window size of the spatial aggregation (shift = half of it).
    cfg.MODEL.SEM_SEG_HEAD.WINDOW_SIZES = 12
    # Classes are padded to this many with learned tokens; with more, each image keeps its
    # top-k classes by CLIP similarity and the rest get logit -100.
    cfg.MODEL.SEM_SEG_HEAD.CLASS_PAD_LEN = 256
    # Training memory: what each Swin block, class aggregation and decoder stage keeps for the
    # backward pass, as CLIP_ACTIVATION_CHECKPOINTING: "none", "selective" or "full" (about one
    # more head forward per step).
    cfg.MODEL.SEM_SEG_HEAD.ACTIVATION_CHECKPOINTING = "none"

    # ------------------------------------------------------------------ test protocol
    # Sliding-window inference: the image is resized to OUT_RES, cut in crops of
    # SLIDING_WINDOW_CROP pixels with this overlap, and a global view is averaged in.
    cfg.TEST.SLIDING_WINDOW = False
    cfg.TEST.SLIDING_WINDOW_OVERLAP = 0.333
    cfg.TEST.SLIDING_WINDOW_OUT_RES = [640, 640]
    # Side in pixels of the sliding-window crops (each crop is then resized to CLIP_RESOLUTION;
    # CAT-Seg uses 384 for ViT-B/16 and ViT-L/14@336px alike).
    cfg.TEST.SLIDING_WINDOW_CROP = 384
    # Arithmetic of inference: "float32", or "bfloat16" / "float16" autocast (they pay off on
    # GPUs; a CPU without bf16/fp16 instructions emulates them, slower; docs/benchmarks.md gives
    # the accuracy cost).
    cfg.TEST.PRECISION = "float32"
    # Benchmarks (short names) that eval_ahs.sh / tools/eval_benchmarks.py evaluate by default.
    cfg.TEST.BENCHMARKS = ["A-847", "PC-459", "A-150", "PC-59", "PAS-20", "PAS-20b"]
    # eval_ahs.sh also scores the frozen CLIP alone (adapters bypassed, no head: argmax of the
    # patch-text cosine, whole image) on every benchmark and reports it beside the model, so a
    # reader sees what segmentation training added. One CLIP pass per image: cheap for the tiny
    # CLIP, a few minutes per benchmark for ViT-L.
    cfg.TEST.FROZEN_CLIP_REFERENCE = False

    # ------------------------------------------------------------------ model: AHS modules (HPA, SDR, AFR)
    # A CLIP patch is labelled (HPA and AFR) with its majority class only if that class covers at
    # least this fraction of the patch's labelled pixels, in (0.5, 1]; other patches are ignored.
    cfg.MODEL.SEM_SEG_HEAD.PATCH_LABEL_PURITY = 0.75
    # Each module's own keys (its switch USE_*, default off, and its weights) are defined beside
    # the code that reads them, in its add_config (cat_seg/modeling/hyperspherical/).
    add_ahs_module_configs(cfg)


def _all_keys(node: CN, prefix: str = "") -> list:
    keys = []
    for key, value in node.items():
        keys += _all_keys(value, f"{prefix}{key}.") if isinstance(value, CN) else [prefix + key]
    return keys


def explain_config_error(error: Exception) -> str:
    """One line for a config that cannot be built: an unknown key gets the closest known keys."""
    import difflib
    import re

    text = str(error).strip("'\"")
    match = re.search(r"Non-existent (?:config )?key: ([\w.]+)", text)
    if not match:
        return text
    cfg = get_cfg()
    add_ahs_config(cfg)
    close = difflib.get_close_matches(match[1], _all_keys(cfg), n=3, cutoff=0.8)
    hint = f"did you mean {' or '.join(close)}?" if close else \
        "the keys are listed in cat_seg/config.py and detectron2/config/defaults.py"
    return f"unknown config key {match[1]}: {hint}"


def build_config(config_file: str, opts: Sequence[str] = (), *, needs_data: bool = True) -> CN:
    """The frozen config every entry point runs with: detectron2's defaults + AHS-Seg's keys,
    ``config_file`` (with its ``_BASE_`` chain; a shipped ``configs/...`` is found from any
    folder, :func:`cat_seg.utils.paths.resolve_repo_path`), then ``opts`` (KEY VALUE ...); ``MODEL.DEVICE
    auto`` resolved to "cuda" when a GPU is visible, else "cpu"; validated by
    :func:`check_config`. ``needs_data=False``: the config may name no dataset (a tool that only
    builds the model, such as tools/convert_checkpoint.py)."""
    cfg = get_cfg()
    add_ahs_config(cfg)
    cfg.merge_from_file(resolve_repo_path(config_file))
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE == "auto":
        cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    check_config(cfg, needs_data=needs_data)
    cfg.freeze()
    return cfg


def build_config_or_explain(config_file: str, opts: Sequence[str] = ()) -> CN:
    """:func:`build_config` for an entry point's check before any work: a missing file or a
    config that cannot be built raises ``FileNotFoundError`` / ``ValueError`` with one line that
    names the problem and the fix (an unknown key gets the closest known keys)."""
    require_file(resolve_repo_path(config_file), "config file", CONFIG_FILE_FIX)
    try:
        return build_config(config_file, opts)
    except (KeyError, AssertionError, ValueError) as error:
        raise ValueError(explain_config_error(error)) from None


def check_config_paths(cfg: CN, weights: bool = True) -> None:
    """Before any work: the files a config names exist and are files. ``MODEL.WEIGHTS`` (when
    ``weights`` and set, unless a URL) and ``MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS`` when it names a
    file (not ``random`` or an open_clip tag such as ``openai``). Raises ``OSError`` with one line
    naming the key, the path and the fix. (``DATASETS.FOLDER_DATASETS`` is checked where the
    descriptions are registered, ``OUTPUT_DIR`` by :func:`cat_seg.utils.paths.check_output_dir`.)"""
    from .modeling.clip.checkpoint import check_clip_weights_path

    if weights and cfg.MODEL.WEIGHTS and "://" not in cfg.MODEL.WEIGHTS:
        require_file(resolve_repo_path(cfg.MODEL.WEIGHTS), "MODEL.WEIGHTS",
                     "pass the path of a checkpoint a training run wrote "
                     "(OUTPUT_DIR/model_final.pth), or leave it empty to start from the CLIP "
                     "weights")
    check_clip_weights_path(cfg.MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS)
