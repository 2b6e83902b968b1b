"""Checkpoints that a kill can never leave half-written.

``DetectionCheckpointer`` writes ``model_XXXX.pth`` in place and then points ``last_checkpoint``
at it; a job killed mid-write leaves a truncated file that ``--resume`` would pick up. Here both
files are written to a temporary name in the same folder, flushed to disk, and renamed over the
target (``os.replace`` is atomic on POSIX), so a reader sees either the old or the new file.
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
    """:class:`DetectionCheckpointer` with atomic ``save`` and ``tag_last_checkpoint``."""

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
