"""Checkpoints that a kill can never leave half-written.

``DetectionCheckpointer`` writes ``model_XXXX.pth`` in place and then points ``last_checkpoint``
at it; a job killed mid-write leaves a truncated file that ``--resume`` would pick up. Here both
files are written to a temporary name in the same folder, flushed to disk, and renamed over the
target (``os.replace`` is atomic on POSIX), so a reader sees either the old or the new file.

Loading (``MODEL.WEIGHTS``, ``--resume``) is strict where detectron2 only warns: a missing,
unreadable or truncated file, and a checkpoint of another architecture (model weights missing
or of another shape), stop with an error instead of evaluating or training a partly random model.
Files are read with ``torch.load(weights_only=True)``: a file that would run code is refused.
"""
import os
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer


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
    weights-only loading (see the module doc)."""

    def load(self, path: str, *args: Any, **kwargs: Any):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint {path} (MODEL.WEIGHTS) does not exist; pass the path of a checkpoint "
                "train_net.py wrote (OUTPUT_DIR/model_final.pth), or an empty MODEL.WEIGHTS to "
                "start from the CLIP weights")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str):
        # Never detectron2's pickle paths (.pkl / .pyth model-zoo files): unpickling runs code.
        try:
            loaded = torch.load(filename, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated zip, foreign format, or pickled code
            raise ValueError(
                f"checkpoint {filename} could not be read ({type(error).__name__}: {error}); "
                "it is truncated or corrupt (copy it again), or not a checkpoint of this "
                "project (CAT-Seg checkpoints convert with tools/convert_checkpoint.py)") from error
        if not isinstance(loaded, dict):
            raise ValueError(f"checkpoint {filename} holds a {type(loaded).__name__}, not a "
                             "dict of weights")
        return loaded if "model" in loaded else {"model": loaded}

    def _load_model(self, checkpoint: Any):
        incompatible = super()._load_model(checkpoint)
        if incompatible is not None and (incompatible.missing_keys
                                         or incompatible.incorrect_shapes):
            shapes = [f"{k} {tuple(a)} in the file vs {tuple(b)} in the model"
                      for k, a, b in incompatible.incorrect_shapes]
            problems = ([f"{len(incompatible.missing_keys)} model weights missing (e.g. "
                         f"{', '.join(incompatible.missing_keys[:4])})"]
                        if incompatible.missing_keys else []) + \
                       ([f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})"]
                        if shapes else [])
            raise ValueError(
                f"the checkpoint does not fit the model built from the config: "
                f"{' and '.join(problems)}; it belongs to another architecture or config — use "
                "the config it was trained with (its OUTPUT_DIR/config.yaml)")
        return incompatible

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))
