"""``--resume`` continues the run that is in the folder, or says why it does not.

A run's ``OUTPUT_DIR/config.yaml`` is the record of how its model was trained. Resuming with
settings that change what is trained (batch size, schedule, data, augmentation, model, AHS
modules) would train another model under that record, so :func:`check_resume` stops with a list
of every difference (key, saved, now) unless the user passes ``--allow-config-change``. Then the
change is appended to ``OUTPUT_DIR/config_history.yaml`` (date, iteration, each key's saved and
new value) and config.yaml stays the original: together they say how the model was trained.
Later resumes compare with the original plus the recorded changes.

Settings that do not change the trained model may differ freely: the device, the checkpoint
period, the data-loader workers, the memory-saving activation checkpointing (same gradients), the
test-time keys and the in-training evaluation.

A run whose last checkpoint is its final iteration has nothing left to train:
:func:`check_resume` returns a :class:`FinishedRun` and the caller says so and exits 0.
"""
import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
import yaml
from detectron2.config import CfgNode
from detectron2.utils import comm

__all__ = ["CONFIG_HISTORY_NAME", "ConfigChangedError", "FinishedRun", "check_resume",
           "config_differences", "record_config_change", "training_config_preserved"]

CONFIG_HISTORY_NAME = "config_history.yaml"
# Settings that change what is trained; a key under one of these prefixes is compared on resume.
TRAINING_PREFIXES = ("MODEL.", "DATASETS.", "INPUT.", "SOLVER.", "SEED")
# ... except these, which change where or how fast it runs, or only the evaluation.
NOT_TRAINING = (
    "MODEL.DEVICE", "MODEL.WEIGHTS", "MODEL.ALLOW_UNEXPECTED_WEIGHTS",
    "MODEL.SEM_SEG_HEAD.ACTIVATION_CHECKPOINTING",
    "MODEL.SEM_SEG_HEAD.CLIP_ACTIVATION_CHECKPOINTING",
    "SOLVER.CHECKPOINT_PERIOD", "DATASETS.TEST", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST",
)


class ConfigChangedError(ValueError):
    """``--resume`` with training settings that differ from the run's saved config."""


@dataclass
class FinishedRun:
    """The run in the folder has reached its last iteration: nothing to resume."""
    checkpoint: str
    iteration: int
    max_iter: int

    def message(self) -> str:
        return (f"the run in {os.path.dirname(self.checkpoint)} is finished: "
                f"{os.path.basename(self.checkpoint)} is iteration {self.iteration + 1} of "
                f"SOLVER.MAX_ITER {self.max_iter}; nothing to train. Evaluate it with bash "
                "eval_ahs.sh CONFIG " + self.checkpoint + ", or train longer with a larger "
                "SOLVER.MAX_ITER and --allow-config-change")


def _flat(node: CfgNode, prefix: str = "") -> dict:
    flat = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _comparable(value):
    """YAML turns tuples into lists; compare both as lists."""
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def _is_training_key(key: str) -> bool:
    return key.startswith(TRAINING_PREFIXES) and key not in NOT_TRAINING


def config_differences(saved: CfgNode, now: CfgNode) -> List[Tuple[str, object, object]]:
    """(key, saved value, value now) of every training setting that differs, sorted by key."""
    a, b = _flat(saved), _flat(now)
    keys = sorted(k for k in set(a) | set(b) if _is_training_key(k))
    return [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in keys
            if _comparable(a.get(k, "<absent>")) != _comparable(b.get(k, "<absent>"))]


def _load_saved(path: str) -> CfgNode:
    """The saved config merged over this version's defaults."""
    from detectron2.config import get_cfg

    from ..config import add_ahs_config  # not at import: cat_seg.config imports this package

    cfg = get_cfg()
    add_ahs_config(cfg)
    cfg.merge_from_file(path)
    return cfg


def _history(output_dir: str) -> list:
    path = os.path.join(output_dir, CONFIG_HISTORY_NAME)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return yaml.safe_load(f) or []


def effective_saved_config(output_dir: str) -> CfgNode:
    """config.yaml with the changes config_history.yaml records applied in order."""
    cfg = _load_saved(os.path.join(output_dir, "config.yaml"))
    for entry in _history(output_dir):
        cfg.merge_from_list([x for key, change in entry.get("changes", {}).items()
                             for x in (key, repr(change["now"]) if isinstance(change["now"], str)
                                       else str(change["now"]))])
    return cfg


def _last_checkpoint(output_dir: str) -> Optional[str]:
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return None
    with open(tag) as f:
        return os.path.join(output_dir, f.read().strip())


def _checkpoint_iteration(path: str) -> Optional[int]:
    """The iteration a checkpoint was saved at (read with mmap: the weights are not loaded)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # the checkpointer reports unreadable files with its own message
        return None
    iteration = state.get("iteration") if isinstance(state, dict) else None
    return int(iteration) if iteration is not None else None


def check_resume(cfg: CfgNode, allow_change: bool) -> Tuple[Optional[FinishedRun], list]:
    """For ``--resume`` into ``cfg.OUTPUT_DIR``: ``(finished, differences)``.

    Raises :class:`ConfigChangedError` listing each difference with the saved config (unless
    ``allow_change``). ``finished`` is a :class:`FinishedRun` when the last checkpoint is the
    run's final iteration, else None. Nothing to check (no checkpoint, no config.yaml): (None, []).
    """
    output_dir = cfg.OUTPUT_DIR
    checkpoint = _last_checkpoint(output_dir)
    saved_path = os.path.join(output_dir, "config.yaml")
    if checkpoint is None or not os.path.isfile(saved_path):
        return None, []
    try:
        saved = effective_saved_config(output_dir)
    except (KeyError, AssertionError, ValueError, yaml.YAMLError) as error:
        if not allow_change:
            raise ConfigChangedError(
                f"--resume: the run's saved config {saved_path} cannot be read with this version "
                f"({str(error).strip()}); resume with the version that trained it, or pass "
                "--allow-config-change to continue with the config given now") from None
        saved = None
    differences = config_differences(saved, cfg) if saved is not None else []
    if differences and not allow_change:
        listed = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, a, b in differences)
        raise ConfigChangedError(
            f"--resume would continue the run in {output_dir} with {len(differences)} training "
            f"setting(s) changed from its {saved_path}: {listed}. Resume with the same settings "
            "(use that config.yaml as --config-file), or pass --allow-config-change to train on "
            f"with the new ones (recorded in {CONFIG_HISTORY_NAME})")
    iteration = _checkpoint_iteration(checkpoint)
    if iteration is not None and iteration + 1 >= cfg.SOLVER.MAX_ITER:
        return FinishedRun(checkpoint, iteration, cfg.SOLVER.MAX_ITER), differences
    return None, differences


def record_config_change(output_dir: str, differences, checkpoint_iteration=None) -> str:
    """Append one entry (date, the checkpoint resumed from, each changed key's saved and new
    value) to OUTPUT_DIR/config_history.yaml; earlier entries are never rewritten."""
    from ..utils.results_folder import write_atomic

    path = os.path.join(output_dir, CONFIG_HISTORY_NAME)
    entry = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "resumed_from": os.path.basename(_last_checkpoint(output_dir) or ""),
             "changes": {k: {"saved": _comparable(a), "now": _comparable(b)}
                         for k, a, b in differences}}
    previous = ""
    if os.path.isfile(path):
        with open(path) as f:
            previous = f.read()
    write_atomic(path, previous + yaml.safe_dump([entry], sort_keys=False))
    return path


@contextmanager
def training_config_preserved(output_dir: str, enabled: bool) -> Iterator[None]:
    """Inside, detectron2's ``default_setup`` may rewrite OUTPUT_DIR/config.yaml; after, the
    run's original is back (a resume must not rewrite how the model was trained)."""
    path = os.path.join(output_dir, "config.yaml") if output_dir else ""
    if not (enabled and path and os.path.isfile(path) and comm.is_main_process()):
        yield
        return
    with open(path) as f:
        original = f.read()
    try:
        yield
    finally:
        from ..utils.results_folder import write_atomic

        write_atomic(path, original)
