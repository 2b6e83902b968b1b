"""Checkpoints that a kill can never leave half-written.

``DetectionCheckpointer`` writes ``model_XXXX.pth`` in place and then points ``last_checkpoint``
at it; a job killed mid-write leaves a truncated file that ``--resume`` would pick up. Here both
files are written to a temporary name in the same folder, flushed to disk, and renamed over the
target (``os.replace`` is atomic on POSIX), so a reader sees either the old or the new file.

Loading (``MODEL.WEIGHTS``, ``--resume``) is strict where detectron2 only warns: a missing,
unreadable or truncated file, and a checkpoint of another architecture (model weights missing
or of another shape), stop with an error instead of evaluating or training a partly random model.
Files are read with ``torch.load(weights_only=True)``: a file that would run code is refused.
Reading and the key-diff wording come from :mod:`cat_seg.utils.state_dicts`, shared with the
CLIP weights' loader and ``tools/convert_checkpoint.py``.

Weights in the file that the model does not have ("unexpected" keys: e.g. the full model's AFR
and HPA weights loaded into the baseline config) are an error too, unless the checkpointer is
built with ``allow_unexpected=True`` (``MODEL.ALLOW_UNEXPECTED_WEIGHTS True``; train_net.py
allows them when it fine-tunes from ``MODEL.WEIGHTS``, as detectron2 does): then they are
dropped with a warning naming the modules, and :attr:`AtomicCheckpointer.ignored_keys` lists
them. An official CAT-Seg checkpoint is recognised by its key layout and the error gives the
``tools/convert_checkpoint.py`` command. A file with NaN/Inf weights is refused, and ``save``
never writes one (so ``last_checkpoint`` always points at finite weights).
"""
import logging
import os
from typing import Any, List, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.state_dicts import (CATSEG_CLIP_PREFIX, CATSEG_PREFIXES, KeyDiff, load_weights_only,
                                 module_summary)


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model built from the config (the message says why)."""


class CheckpointReadError(ValueError):
    """The checkpoint file cannot be read: truncated, corrupt, not a checkpoint, or pickled code
    (the message says which file and what to do)."""


def non_finite_tensors(state: dict) -> List[str]:
    """Names of the floating-point tensors of ``state`` holding NaN or Inf."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def catseg_conversion_command(path: str, state: dict) -> Tuple[str, str, str]:
    """(command, converted file, config) to convert the official CAT-Seg checkpoint at ``path``."""
    width = state.get(CATSEG_CLIP_PREFIX + "visual.conv1.weight")
    config = ("configs/vitl_336_catseg.yaml" if width is not None and width.shape[0] == 1024
              else "configs/vitb_384_catseg.yaml")
    stem, _ = os.path.splitext(path)
    return (f"python tools/convert_checkpoint.py {path} {stem}_ahs.pth --config-file {config}",
            f"{stem}_ahs.pth", config)


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class AtomicCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` with atomic ``save`` / ``tag_last_checkpoint`` and strict,
    weights-only loading (see the module doc).

    ``allow_unexpected``: drop (with a warning) checkpoint weights the model does not have,
    instead of stopping; :attr:`ignored_keys` then lists what the last ``load`` dropped.
    """

    def __init__(self, model, save_dir: str = "", *, allow_unexpected: bool = False,
                 **checkpointables: Any):
        super().__init__(model, save_dir, **checkpointables)
        self.allow_unexpected = allow_unexpected
        self.ignored_keys: List[str] = []
        self._loading = ""

    @property
    def loaded_path(self) -> str:
        """The file the last :meth:`load` read ("" before any)."""
        return self._loading

    def load(self, path: str, *args: Any, **kwargs: Any):
        if path and "://" not in path and not os.path.isfile(path):
            tag = os.path.join(self.save_dir, "last_checkpoint") if self.save_dir else ""
            if tag and os.path.isfile(tag) and \
                    os.path.abspath(os.path.dirname(path)) == os.path.abspath(self.save_dir):
                present = sorted(f for f in os.listdir(self.save_dir) if f.endswith(".pth"))
                raise FileNotFoundError(
                    f"--resume: {tag} names {os.path.basename(path)}, which does not exist "
                    "(deleted or moved?); put it back, or write the name of one of the folder's "
                    f"checkpoints into last_checkpoint ({', '.join(present[-3:]) or 'there is none'}),"
                    " or train without --resume")
            raise FileNotFoundError(
                f"checkpoint {path} (MODEL.WEIGHTS) does not exist; pass the path of a checkpoint "
                "train_net.py wrote (OUTPUT_DIR/model_final.pth), or an empty MODEL.WEIGHTS to "
                "start from the CLIP weights")
        self._loading = path
        self.ignored_keys = []
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str):
        # Never detectron2's pickle paths (.pkl / .pyth model-zoo files): unpickling runs code.
        try:
            loaded = load_weights_only(filename)
        except Exception as error:  # truncated zip, foreign format, or pickled code
            raise CheckpointReadError(
                f"checkpoint {filename} could not be read ({type(error).__name__}: {error}); "
                "it is truncated or corrupt (copy it again), or not a checkpoint of this "
                "project (CAT-Seg checkpoints convert with tools/convert_checkpoint.py)") from error
        if not isinstance(loaded, dict):
            raise CheckpointReadError(f"checkpoint {filename} holds a {type(loaded).__name__}, "
                                      "not a dict of weights")
        return loaded if "model" in loaded else {"model": loaded}

    def _load_model(self, checkpoint: Any):
        path = self._loading or "the checkpoint"
        state = checkpoint.get("model", {})
        if any(k.startswith(CATSEG_PREFIXES) for k in state):
            command, output, config = catseg_conversion_command(path, state)
            raise CheckpointMismatchError(
                f"{path} is an official CAT-Seg checkpoint (its weights are under "
                "sem_seg_head.predictor.clip_model / .transformer), not AHS-Seg's layout; convert "
                f"it first:\n  {command}\nthen use MODEL.WEIGHTS {output} with {config}")
        bad = non_finite_tensors(state)
        if bad:
            raise CheckpointMismatchError(
                f"{path} holds NaN/Inf weights ({len(bad)} tensors, e.g. {', '.join(bad[:3])}); "
                "the run that wrote it diverged — use an earlier checkpoint of that run")
        incompatible = super()._load_model(checkpoint)
        if incompatible is not None and (incompatible.missing_keys
                                         or incompatible.incorrect_shapes):
            diff = KeyDiff(missing=list(incompatible.missing_keys),
                           mismatched=[(k, tuple(a), tuple(b))
                                       for k, a, b in incompatible.incorrect_shapes])
            raise CheckpointMismatchError(
                f"the checkpoint {path} does not fit the model built from the config: "
                f"{diff.missing_or_reshaped()}; it belongs to another architecture or config — "
                "use the config it was trained with (its OUTPUT_DIR/config.yaml)")
        unexpected = list(incompatible.unexpected_keys) if incompatible is not None else []
        if unexpected and not self.allow_unexpected:
            raise CheckpointMismatchError(
                f"the checkpoint {path} holds {len(unexpected)} weights the model built from the "
                f"config does not have: {module_summary(unexpected)}; it was trained with "
                "another config (e.g. the full model's AFR/HPA weights evaluated with the baseline "
                "config), so the results would not be that model's. Use the config it was trained "
                "with (its OUTPUT_DIR/config.yaml), or, to use only the weights that fit on "
                "purpose, set MODEL.ALLOW_UNEXPECTED_WEIGHTS True (--allow-unexpected-weights in "
                "tools/demo.py)")
        if unexpected:
            self.ignored_keys = unexpected
            logging.getLogger("cat_seg").warning(
                "MODEL.ALLOW_UNEXPECTED_WEIGHTS / fine-tuning: %d weights of %s that this model "
                "does not have are IGNORED: %s", len(unexpected), path,
                module_summary(unexpected))
            # Reported once, here; fvcore's own log of the same keys is redundant.
            incompatible.unexpected_keys.clear()
        return incompatible

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        bad = non_finite_tensors(data["model"])
        if bad:
            last = os.path.join(self.save_dir, "last_checkpoint")
            previous = open(last).read().strip() if os.path.isfile(last) else None
            raise FloatingPointError(
                f"not saving {name}.pth: {len(bad)} model weight tensors hold NaN/Inf (e.g. "
                f"{', '.join(bad[:3])}); training diverged. "
                + (f"last_checkpoint still points at {previous} (finite): lower SOLVER.BASE_LR or "
                   "clip gradients (SOLVER.CLIP_GRADIENTS) and resume from it with --resume"
                   if previous else "no checkpoint of this run was written: lower SOLVER.BASE_LR "
                   "or clip gradients (SOLVER.CLIP_GRADIENTS) and start again"))
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))
