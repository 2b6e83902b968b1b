"""Validation of a merged config: a bad value stops the run before any work, with the fix.

detectron2 already rejects unknown keys when merging a YAML file or ``--opts``; this checks that
the values of known keys make sense together, and that no key is set that nothing reads: the
config inherits every key of detectron2's defaults (detection heads, ResNet, proposal files...),
and most of them have no effect on this model. :func:`check_unread_keys` rejects any inherited
key outside :data:`READ_INHERITED_KEYS` that differs from detectron2's default, naming the key
that does the job where there is one (``MODEL.SEM_SEG_HEAD.NUM_CLASSES``: the vocabulary is the
dataset's class names).
"""
import torch

from .ahs_seg_model import TEST_PRECISIONS
from .engine.optimizer import CLIP_GRADIENT_TYPES, OPTIMIZERS
from .engine.train_loop import AMP_PRECISIONS
from .modeling.clip.backbone import FINETUNE_MODES
from .modeling.clip.prompts import PROMPT_ENSEMBLES
from .modeling.head import HEADS
from .modeling.hyperspherical import ahs_module_classes

# Each set of allowed values is defined beside the code that uses it (the AHS modules' loss
# weights: each module's loss_weight_keys).
_CHOICES = {
    "MODEL.SEM_SEG_HEAD.NAME": HEADS,
    "MODEL.SEM_SEG_HEAD.CLIP_FINETUNE": FINETUNE_MODES,
    "MODEL.SEM_SEG_HEAD.PROMPT_ENSEMBLE_TYPE": PROMPT_ENSEMBLES,
    "SOLVER.OPTIMIZER": OPTIMIZERS,
    "SOLVER.AMP.PRECISION": tuple(AMP_PRECISIONS),
    "TEST.PRECISION": tuple(TEST_PRECISIONS),
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": CLIP_GRADIENT_TYPES,
}
_NON_NEGATIVE = (
    "SOLVER.BASE_LR", "SOLVER.WEIGHT_DECAY", "SOLVER.CLIP_MULTIPLIER",
    "SOLVER.WEIGHT_DECAY_EMBED",
)
_POSITIVE_INTS = (
    "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "MODEL.SEM_SEG_HEAD.OFT_BLOCK_SIZE",
    "MODEL.SEM_SEG_HEAD.NUM_LAYERS", "MODEL.SEM_SEG_HEAD.NUM_HEADS",
    "MODEL.SEM_SEG_HEAD.HIDDEN_DIMS", "MODEL.SEM_SEG_HEAD.WINDOW_SIZES",
    "SOLVER.MAX_ITER", "SOLVER.IMS_PER_BATCH",
)


# detectron2's keys that this project's code, or the detectron2 code it runs (DefaultTrainer's
# hooks and LR scheduler, default_setup, verify_results), reads. The keys AHS-Seg adds or
# re-defaults (cat_seg/config.py and the AHS modules' add_config) are read by definition.
READ_INHERITED_KEYS = frozenset({
    "CUDNN_BENCHMARK", "OUTPUT_DIR", "SEED", "VERSION", "GLOBAL.HACK",
    "DATASETS.TRAIN", "DATASETS.TEST", "DATALOADER.NUM_WORKERS",
    "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN", "INPUT.MIN_SIZE_TRAIN_SAMPLING",
    "INPUT.CROP.ENABLED", "INPUT.CROP.TYPE", "INPUT.CROP.SIZE",
    "MODEL.WEIGHTS", "MODEL.SEM_SEG_HEAD.IGNORE_VALUE",
    "SOLVER.AMP.ENABLED", "SOLVER.BASE_LR", "SOLVER.BASE_LR_END", "SOLVER.CHECKPOINT_PERIOD",
    "SOLVER.CLIP_GRADIENTS.ENABLED", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE", "SOLVER.GAMMA", "SOLVER.IMS_PER_BATCH",
    "SOLVER.LR_SCHEDULER_NAME", "SOLVER.MAX_ITER", "SOLVER.MOMENTUM", "SOLVER.NUM_DECAYS",
    "SOLVER.REFERENCE_WORLD_SIZE", "SOLVER.RESCALE_INTERVAL", "SOLVER.STEPS",
    "SOLVER.WARMUP_FACTOR", "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_METHOD",
    "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM",
    "TEST.EVAL_PERIOD", "TEST.EXPECTED_RESULTS",
})
# What to use instead of an unread key (prefix match, longest first); other keys get a generic
# "nothing reads it".
_INSTEAD = {
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": "the classes are the dataset's class names (the training "
    "set's metadata stuff_classes; each benchmark its own); MODEL.SEM_SEG_HEAD.CLASS_PAD_LEN "
    "sets how many the head scores at once",
    "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT": "the segmentation loss has weight 1; the AHS modules' "
    "weights are MODEL.SEM_SEG_HEAD.*_LOSS_WEIGHT",
    "MODEL.SEM_SEG_HEAD": "the head is configured by the keys cat_seg/config.py defines "
    "(e.g. MODEL.SEM_SEG_HEAD.HIDDEN_DIMS, DECODER_DIMS)",
    "MODEL.PIXEL_": "CLIP's own normalisation is used, fixed by MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED",
    "MODEL.BACKBONE": "the backbone is CLIP: MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED / CLIP_WEIGHTS / "
    "CLIP_FINETUNE",
    "MODEL.RESNETS": "the backbone is CLIP: MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED",
    "INPUT.RANDOM_FLIP": "training always flips horizontally at random (CAT-Seg's pipeline)",
    "INPUT.MASK_FORMAT": "labels are semantic label maps, read by the dataset",
    "SOLVER.BIAS_LR_FACTOR": "biases learn at SOLVER.BASE_LR (x SOLVER.CLIP_MULTIPLIER inside CLIP)",
    "SOLVER.WEIGHT_DECAY_BIAS": "biases and norms never get weight decay; embeddings get "
    "SOLVER.WEIGHT_DECAY_EMBED",
    "SOLVER.NESTEROV": "SGD runs with SOLVER.MOMENTUM only",
    "TEST.AUG": "the test protocol is TEST.SLIDING_WINDOW",
    "TEST.PRECISE_BN": "the model has no BatchNorm layer",
    "DATALOADER": "training batches come from a resumable stream of DATASETS.TRAIN, drawn "
    "uniformly (SEED); only DATALOADER.NUM_WORKERS applies",
}


def _flat(node, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_unread_keys(cfg) -> None:
    """Raise ``ValueError`` for the first key inherited from detectron2 that nothing in this
    project reads (not in :data:`READ_INHERITED_KEYS`, not defined by AHS-Seg) and that is set to
    a value other than detectron2's default: it would be accepted and have no effect."""
    from detectron2.config import get_cfg

    from .config import add_ahs_config  # not at import: cat_seg.config imports this module

    detectron2_defaults = _flat(get_cfg())
    ours = get_cfg()
    add_ahs_config(ours)
    ahs_defined = {k for k, v in _flat(ours).items()
                   if k not in detectron2_defaults or not _same(v, detectron2_defaults[k])}
    for key, value in sorted(_flat(cfg).items()):
        if key in READ_INHERITED_KEYS or key in ahs_defined or key not in detectron2_defaults:
            continue
        if _same(value, detectron2_defaults[key]):
            continue
        instead = next((hint for prefix, hint in sorted(_INSTEAD.items(), key=lambda x: -len(x[0]))
                        if key.startswith(prefix)), None)
        raise ValueError(
            f"{key}={value!r} has no effect: it is one of detectron2's keys that AHS-Seg never "
            "reads" + (f"; {instead}" if instead else "") + f". Remove it (default {detectron2_defaults[key]!r})")


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, part):
            return None
        node = getattr(node, part)
    return node


def _ahs_loss_weight_keys() -> tuple:
    """The loss weights every registered AHS module declares (``loss_weight_keys``)."""
    return tuple(f"MODEL.SEM_SEG_HEAD.{key}" for cls in ahs_module_classes()
                 for key in cls.loss_weight_keys)


def check_config(cfg, *, needs_data: bool = True) -> None:
    """Raise ``ValueError`` naming the first key whose value is invalid and how to fix it.

    ``needs_data=False``: the config may name no dataset (only its model is built).
    """
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value is not None and value not in choices:
            raise ValueError(f"{key}={value!r} is invalid; choose one of {list(choices)}")
    for key in _NON_NEGATIVE + _ahs_loss_weight_keys():
        value = _get(cfg, key)
        if value is not None and value < 0:
            raise ValueError(f"{key}={value} is negative; it must be >= 0 (0 switches it off)")
    for key in _POSITIVE_INTS:
        value = _get(cfg, key)
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{key}={value!r} must be a positive integer")
    overlap = cfg.TEST.SLIDING_WINDOW_OVERLAP
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"TEST.SLIDING_WINDOW_OVERLAP={overlap} must be in [0, 1)")
    if len(cfg.MODEL.SEM_SEG_HEAD.POOLING_SIZES) != 2:
        raise ValueError("MODEL.SEM_SEG_HEAD.POOLING_SIZES must have two entries, e.g. [2, 2]")
    device = str(cfg.MODEL.DEVICE)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE={device!r} but no CUDA GPU is visible; "
                         "use MODEL.DEVICE cpu (or auto)")
    if needs_data and not cfg.DATASETS.TRAIN and not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TRAIN and DATASETS.TEST are both empty; name a dataset")
    check_unread_keys(cfg)
