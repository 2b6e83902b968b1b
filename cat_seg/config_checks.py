"""Validation of a merged config: a bad value stops the run before any work, with the fix.

detectron2 already rejects unknown keys when merging a YAML file or ``--opts``; this checks that
the values of known keys make sense together.
"""
import torch

from .ahs_seg_model import TEST_PRECISIONS
from .engine.optimizer import CLIP_GRADIENT_TYPES, OPTIMIZERS
from .engine.train_loop import AMP_PRECISIONS
from .modeling.clip.backbone import FINETUNE_MODES
from .modeling.clip.prompts import PROMPT_ENSEMBLES
from .modeling.hyperspherical import ahs_module_classes

# Each set of allowed values is defined beside the code that uses it (the AHS modules' loss
# weights: each module's loss_weight_keys).
_CHOICES = {
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
