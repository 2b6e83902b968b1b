"""Reading weight files without running code, and describing how a state dict fits a model.

The one home of what the three weight loaders share: the backbone's CLIP weights
(:mod:`cat_seg.modeling.clip.checkpoint`), training checkpoints
(:class:`cat_seg.engine.checkpointer.AtomicCheckpointer`) and CAT-Seg's checkpoints
(:mod:`cat_seg.engine.catseg_checkpoint`, behind ``tools/convert_checkpoint.py``):

* :func:`load_weights_only`: ``torch.load(path, map_location="cpu", weights_only=True)``, so a file
  that would run code when unpickled is refused (``pickle.UnpicklingError``). Each loader words
  its own error around it, since the fix differs (copy the file again, convert it first...);
* :func:`is_tensor_mapping`: whether an object is a state dict (names -> tensors);
* :class:`KeyDiff`: the missing, unexpected and wrongly shaped keys of a state dict against a
  model's, and the ways the loaders print them; :func:`module_summary` counts keys per module
  (``"feature_rectification.* (12), prototype_alignment.* (2)"``);
* the key prefixes of an official CAT-Seg checkpoint (:data:`CATSEG_CLIP_PREFIX`,
  :data:`CATSEG_AGGREGATOR_PREFIX`), by which the checkpointer recognises one and the converter
  reads one.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Sequence, Tuple

import torch

# Where an official CAT-Seg checkpoint (cvlab-kaist/CAT-Seg) keeps CLIP and the aggregator.
CATSEG_CLIP_PREFIX = "sem_seg_head.predictor.clip_model."
CATSEG_AGGREGATOR_PREFIX = "sem_seg_head.predictor.transformer."
CATSEG_PREFIXES = (CATSEG_CLIP_PREFIX, CATSEG_AGGREGATOR_PREFIX)


def load_weights_only(path: str) -> Any:
    """What ``torch.save`` wrote to ``path``, on the CPU, read with ``weights_only=True``.

    Raises what ``torch.load`` raises: ``pickle.UnpicklingError`` for a file that holds Python
    objects other than tensors and plain containers (they could run code), other errors for a
    truncated or foreign file.
    """
    return torch.load(path, map_location="cpu", weights_only=True)


def is_tensor_mapping(obj: Any) -> bool:
    """Whether ``obj`` is a state dict: a mapping whose every value is a tensor."""
    return isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values())


def module_summary(keys: Sequence[str], depth: int = 1) -> str:
    """``"feature_rectification.* (12), prototype_alignment.* (2)"``: keys counted per module
    (their first ``depth`` name parts), modules sorted by name."""
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    return ", ".join(f"{name}.* ({n})" for name, n in sorted(counts.items()))


Shape = Tuple[int, ...]


@dataclass
class KeyDiff:
    """How a state dict read from a file fits a model's.

    ``missing``: model keys the file lacks; ``unexpected``: file keys the model lacks;
    ``mismatched``: ``(key, shape in the file, shape in the model)``.
    """

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Shape, Shape]] = field(default_factory=list)

    @classmethod
    def between(cls, expected: Mapping[str, torch.Tensor],
                loaded: Mapping[str, torch.Tensor]) -> "KeyDiff":
        """The diff of ``loaded`` (the file's) against ``expected`` (the model's state dict);
        missing and mismatched keys in the model's order, unexpected ones in the file's."""
        return cls(
            missing=[k for k in expected if k not in loaded],
            unexpected=[k for k in loaded if k not in expected],
            mismatched=[(k, tuple(loaded[k].shape), tuple(expected[k].shape))
                        for k in expected if k in loaded and loaded[k].shape != expected[k].shape],
        )

    def sorted(self) -> "KeyDiff":
        """The same diff with missing and unexpected keys sorted by name."""
        return KeyDiff(sorted(self.missing), sorted(self.unexpected), list(self.mismatched))

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    # ------------------------------------------------------------------ how the loaders print it
    def listing(self, limit: int = 8) -> str:
        """One indented line per kind, up to ``limit`` keys each (the CLIP weights' message)::

            shape mismatches (1): ['positional_embedding: checkpoint (77, 64) vs model (77, 128)']
            missing keys (2): [...]
            unexpected keys (3): [...] (+1 more)
        """
        def lines(title: str, items: List[str]) -> str:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            return f"\n  {title} ({len(items)}): {items[:limit]}{more}" if items else ""

        shapes = [f"{k}: checkpoint {a} vs model {b}" for k, a, b in self.mismatched]
        return (lines("shape mismatches", shapes) + lines("missing keys", self.missing)
                + lines("unexpected keys", self.unexpected))

    def brief(self, limit: int = 5) -> str:
        """``missing [...] (n), unexpected [...] (n), shape mismatches [...]`` (the converter's
        check against a config)."""
        shapes = [f"{k}: {a} vs {b}" for k, a, b in self.mismatched]
        return (f"missing {self.missing[:limit]} ({len(self.missing)}), unexpected "
                f"{self.unexpected[:limit]} ({len(self.unexpected)}), shape mismatches "
                f"{shapes[:limit]}")

    def missing_or_reshaped(self) -> str:
        """``"N model weights missing (e.g. a, b, c, d) and M of another shape (e.g. k (2,) in
        the file vs (3,) in the model; ...)"``, empty when nothing is missing or reshaped (the
        training checkpoints' message; unexpected keys are told apart by
        :func:`module_summary`)."""
        shapes = [f"{k} {a} in the file vs {b} in the model" for k, a, b in self.mismatched]
        problems = ([f"{len(self.missing)} model weights missing (e.g. "
                     f"{', '.join(self.missing[:4])})"] if self.missing else []) + \
                   ([f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})"]
                    if shapes else [])
        return " and ".join(problems)
