"""Segment images into any class names from Python: load a model once, call it per image.

    from cat_seg import Segmenter
    seg = Segmenter.from_config("configs/synthetic/quickstart.yaml", "output/quickstart/model_final.pth", device="cpu")
    result = seg("photo.jpg", ["sky", "grass", "lava"])

``result.labels`` is the (H, W) label map (indices into ``result.class_names``, ``-1`` where no
class is present), ``result.sigmoid_scores`` the (T, H, W) per-class scores. tools/demo.py and
tools/web_demo.py run exactly this; the evaluation runs the same model path
(:meth:`cat_seg.AHSSeg.inference`).

What "present" means. CAT-Seg scores every class on its own (a sigmoid per class, trained with
binary cross-entropy), not as probabilities that share the pixel: a class can score low
everywhere, and the highest of a few low scores is still low. A pixel gets the class with the
highest score only when that score reaches ``min_score`` (default :data:`DEFAULT_MIN_SCORE`);
otherwise it is *unlabelled* (:data:`UNLABELLED`, "none of these names"). A class is present
when it labels at least one pixel. ``min_score=0`` labels every pixel (the evaluation's argmax,
which scores a closed vocabulary that covers every labelled pixel).

Why 0.1 and not 0.5. The scores are not calibrated probabilities, least of all for names never
trained on. Measured with the quick-start baseline (500 iterations) on 8 rendered validation
scenes: with the 6 held-out names, the true class scores a median 0.26 at its own pixels (only
3 % of them reach 0.5, while the argmax is right at 94 %); 0.1 keeps 95 % of the correctly
labelled pixels (the 16 seen names: 100 %), and a held-out name that is absent, segmented alone,
covers 0.4 % of the image on average instead of 100 %. A name segmented alone scores lower than
among others (the head's class aggregation compares the names with each other): a present
held-out class alone reaches 0.1 on a few % of its pixels. Name a few classes together; other
models may call for another ``min_score``.
"""
import logging
import threading
import time
from collections import OrderedDict
from functools import cached_property
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .inference.image_inputs import RGBImage, to_rgb
from .inference.score_maps import DEFAULT_CHUNK_BYTES, ScoreMaps

log = logging.getLogger(__name__)

MODES = ("sliding", "whole")
# Vocabularies whose text embeddings a Segmenter keeps (least recently used dropped first).
TEXT_CACHE_SIZE = 16
# Label of pixels where no class reaches ``min_score`` (module docstring).
UNLABELLED = -1
DEFAULT_MIN_SCORE = 0.1
# Names encoded by the text encoder at once: its activations grow with names × prompt tokens, so
# a long vocabulary goes through it in chunks (every benchmark's vocabulary, up to A-847, fits
# one chunk, so their embeddings are computed exactly as the evaluation computes them).
TEXT_CHUNK = 1024
# From this many names on, the head's memory (views × names) dominates: the sliding window's
# views then go through the model one at a time (a fifth of the memory of all five at once; the
# scores differ from the batched evaluation's by float rounding, ~1e-6), and the demos add a
# note. Every benchmark's vocabulary (up to A-847) is shorter: scored exactly as evaluated.
LARGE_VOCABULARY = 1000


class SegmentationResult:
    """One image segmented into ``class_names``.

    Attributes:
        labels: (H, W) int64 label map at the input's size (after EXIF orientation): per pixel
            the index into ``class_names`` of the class with the highest score, or
            :data:`UNLABELLED` (-1) where that score is below ``min_score`` (no class present).
        class_names: the vocabulary of the call (T names), in its order.
        min_score: the score a class needs at a pixel to label it (module docstring).
        seconds: wall time of this image (reading, model, label map).
        top_scores: (H, W) float32, the highest class's sigmoid score per pixel.
        notes: things done to the input the caller may want to know (EXIF orientation).
        name: the input's name (its path, or its kind).
        sigmoid_scores: (T, H, W) float32, each class's independent sigmoid score per pixel, the
            model's output. They are *not* probabilities over the classes: they do not sum to 1
            and a class can score low everywhere. Computed at first access, a few classes at a
            time, then kept: T·H·W·4 bytes (150 classes on a 12-megapixel photo: 7.2 GB); for one
            class use :meth:`class_scores`, which keeps nothing.
    """

    def __init__(self, labels: np.ndarray, top_scores: np.ndarray, class_names: List[str],
                 score_maps: ScoreMaps, seconds: float, image: RGBImage,
                 min_score: float = 0.0):
        self.labels = labels
        self.top_scores = top_scores
        self.class_names = class_names
        self.min_score = float(min_score)
        self.seconds = seconds
        self.name = image.name
        self.notes = list(image.notes)
        self.exif_orientation = image.exif_orientation
        self._score_maps = score_maps

    @cached_property
    def sigmoid_scores(self) -> np.ndarray:
        scores = np.empty((len(self.class_names),) + self.labels.shape, np.float32)
        with torch.inference_mode():
            for start, chunk in self._score_maps.chunks():
                scores[start:start + len(chunk)] = chunk.cpu().numpy()
        return scores

    def class_scores(self, name_or_index: Union[str, int]) -> np.ndarray:
        """(H, W) float32 sigmoid scores of one class, by its index or its name."""
        if isinstance(name_or_index, str):
            if name_or_index not in self.class_names:
                raise KeyError(f"{name_or_index!r} is not one of this result's classes "
                               f"{self.class_names}")
            name_or_index = self.class_names.index(name_or_index)
        if "sigmoid_scores" in self.__dict__:
            return self.sigmoid_scores[name_or_index]
        with torch.inference_mode():
            return self._score_maps.class_scores(int(name_or_index)).cpu().numpy()

    def fractions(self) -> Dict[int, float]:
        """{class index: fraction of all pixels} of the classes present (unlabelled pixels count
        in the total, not as a class)."""
        return class_fractions(self.labels)

    @property
    def present(self) -> List[str]:
        """Names of the classes present (labelling at least one pixel), in vocabulary order."""
        return [self.class_names[c] for c in sorted(self.fractions())]

    @property
    def unlabelled_fraction(self) -> float:
        """Fraction of the pixels where no class reaches ``min_score``."""
        return float(np.count_nonzero(self.labels == UNLABELLED)) / self.labels.size

    def __repr__(self) -> str:
        height, width = self.labels.shape
        return (f"SegmentationResult({self.name!r}, {width}x{height} px, "
                f"{len(self.class_names)} classes, {self.seconds:.2f} s)")


def class_fractions(labels: np.ndarray) -> Dict[int, float]:
    """{class index: fraction of the pixels of ``labels`` (H, W)} for the classes present;
    :data:`UNLABELLED` pixels count in the total only."""
    counts = np.bincount((labels + 1).ravel())[1:]  # index 0 counts the unlabelled (-1)
    return {int(c): float(counts[c]) / labels.size for c in np.flatnonzero(counts)}


def check_min_score(min_score: float) -> float:
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score={min_score}: a sigmoid score threshold in [0, 1] (0 labels "
                         f"every pixel, {DEFAULT_MIN_SCORE} is the default; --min-score in the "
                         "demos)")
    return float(min_score)


def check_class_names(class_names: Sequence[str]) -> Tuple[str, ...]:
    """The call's vocabulary as a tuple of names (whitespace collapsed), or an error naming the
    problem: a string instead of a list, a non-string, an empty or a duplicate name (the demos'
    checks, :func:`cat_seg.demo.images.check_vocabulary`)."""
    from .demo.images import check_vocabulary

    if isinstance(class_names, str):
        raise TypeError(f"class names must be a list of strings, not the string {class_names!r} "
                        "(write [\"sky\", \"grass\"], not \"sky, grass\")")
    names = list(class_names)
    bad = [repr(n) for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"class names must be strings; got {', '.join(bad)}")
    return tuple(check_vocabulary(names, "class_names"))


class Segmenter:
    """An AHS-Seg model loaded once, called per image with that call's class names.

        seg = Segmenter.from_config(config, weights, device="cpu")
        result = seg(image, ["sky", "grass"])              # -> SegmentationResult
        results = seg([image1, image2], ["sky", "grass"])  # -> [SegmentationResult, ...]

    Images: a path, a PIL image, a numpy uint8 (H, W, 3) array or a torch (3, H, W) tensor (uint8
    0-255 or float 0-1); see :mod:`cat_seg.inference.image_inputs`.

    ``mode``: ``"sliding"`` (default) is the evaluation's test protocol (tools/eval_benchmarks.py,
    eval_ahs.sh): the image resized as the evaluation resizes it, then CAT-Seg's sliding window
    of crops plus a global view; its scores equal the evaluation's. ``"whole"`` is one view of the
    whole image (a fifth of the model's work; not what the benchmarks measure, and less accurate
    there). Both run the model built with the test protocol's class-aggregation pooling
    ``[1, 1]`` (:data:`cat_seg.engine.benchmarks.TEST_PROTOCOL`).

    ``min_score`` (default 0.1): the sigmoid score a class needs to label a pixel; below it the
    pixel is :data:`UNLABELLED` (-1), none of the names (module docstring: what "present" means).
    ``min_score=0`` gives every pixel its highest class, the evaluation's argmax.

    Threads: the vocabulary belongs to the call, not to the model; several threads may call one
    Segmenter at once with different class names, without a lock of their own. Text embeddings
    are cached per vocabulary (the :data:`TEXT_CACHE_SIZE` most recent; dropped when the weights
    change). The per-pixel work after the model runs a few classes at a time (``chunk_bytes``),
    so memory does not grow with T × H × W unless ``sigmoid_scores`` is read.
    """

    def __init__(self, model: torch.nn.Module, cfg, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 ignored_weights: Sequence[str] = ()):
        """
        Args:
            model: an :class:`cat_seg.AHSSeg` with its weights loaded (set to evaluation mode).
            cfg: the config it was built from (its INPUT.MIN_SIZE_TEST resize is the
                evaluation's).
            chunk_bytes: working memory for the per-pixel steps of a few classes at a time.
            ignored_weights: checkpoint keys the model does not have that were dropped while
                loading (``allow_unexpected_weights``); kept for the caller to report.
        """
        from .data.dataset_mapper import SemanticDatasetMapper

        self.model = model.eval()
        self.cfg = cfg
        self.chunk_bytes = int(chunk_bytes)
        self.ignored_weights = list(ignored_weights)
        self._resize = SemanticDatasetMapper(cfg, is_train=False).augmentations
        self._text_cache: "OrderedDict[Tuple[str, ...], Tuple[Hashable, torch.Tensor]]" = \
            OrderedDict()
        # Guards the text cache and the text encoder (whose own caches are not thread-safe);
        # image inference runs outside it, in parallel.
        self._text_lock = threading.Lock()

    @classmethod
    def from_config(cls, config_file: str, weights: Optional[str] = None, *,
                    device: Optional[str] = None, opts: Sequence[str] = (),
                    allow_unexpected_weights: bool = False, sha256: Optional[str] = None,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> "Segmenter":
        """Build the model of ``config_file`` with the test protocol and load ``weights``.

        Args:
            config_file: a config (relative paths: from the current folder first, then from the
                repository, so ``configs/...`` works from any folder).
            weights: checkpoint a training run wrote (``OUTPUT_DIR/model_final.pth``), resolved
                like ``config_file``, or an http(s) URL / ``hf://owner/name/file`` (downloaded
                once into the cache, checked against ``sha256`` when given; an official CAT-Seg
                checkpoint is converted there); None: the config's MODEL.WEIGHTS.
            device: "cpu", "cuda", "cuda:1", "auto"...; None: the config's MODEL.DEVICE.
            opts: config overrides ``[KEY, VALUE, ...]``, applied after the test protocol.
            allow_unexpected_weights: drop (and list in ``ignored_weights``) checkpoint weights
                the model does not have, instead of stopping.
        """
        from .demo.images import build_demo_model, setup_cfg

        cfg = setup_cfg(config_file, opts, device=device, weights=weights,
                        allow_unexpected_weights=allow_unexpected_weights, sha256=sha256)
        model, ignored = build_demo_model(cfg)
        return cls(model, cfg, chunk_bytes=chunk_bytes, ignored_weights=ignored)

    # ------------------------------------------------------------------ calls
    def __call__(self, images, class_names: Sequence[str], *, mode: str = "sliding",
                 min_score: float = DEFAULT_MIN_SCORE
                 ) -> Union[SegmentationResult, List[SegmentationResult]]:
        """Segment one image (-> a result) or a list / tuple of images (-> a list of results)
        into ``class_names``; see the class docstring for the inputs and ``mode``, the module
        docstring for ``min_score`` (0: every pixel gets its best class)."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; use one of {list(MODES)} (\"sliding\": the "
                             "evaluation's protocol)")
        names = check_class_names(class_names)
        min_score = check_min_score(min_score)
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("the list of images is empty")
            return [self._segment(image, names, mode, min_score) for image in images]
        return self._segment(images, names, mode, min_score)

    def text_embeddings(self, class_names: Sequence[str]) -> torch.Tensor:
        """(T, P, D) text embeddings of ``class_names``, cached per vocabulary; encoded
        :data:`TEXT_CHUNK` names at a time."""
        names = tuple(class_names)
        backbone = self.model.backbone
        with self._text_lock, torch.inference_mode():
            # Any parameter replaced, moved or updated in place changes this key (the
            # backbone's own cache uses it too), so new weights never meet stale embeddings.
            state = backbone._weights_key()
            hit = self._text_cache.get(names)
            if hit is not None and hit[0] == state:
                self._text_cache.move_to_end(names)
                return hit[1]
            text = torch.cat([backbone.encode_text(list(names[i:i + TEXT_CHUNK]))
                              for i in range(0, len(names), TEXT_CHUNK)])
            self._text_cache[names] = (state, text)
            self._text_cache.move_to_end(names)
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
            return text

    def score_maps(self, image: RGBImage, text: torch.Tensor, mode: str) -> ScoreMaps:
        """The model's test path on one image: the evaluation's resize, then the sliding window
        or the whole image; scores at the image's size, computed on demand."""
        from detectron2.data import transforms as T

        resized = T.AugInput(image.pixels)
        self._resize(resized)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.image.transpose(2, 0, 1)))
        height, width = image.pixels.shape[:2]
        views_per_pass = 1 if len(text) >= LARGE_VOCABULARY else None
        with torch.inference_mode():
            return self.model.inference([{"image": tensor, "height": height, "width": width}],
                                        text, sliding_window=(mode == "sliding"),
                                        views_per_pass=views_per_pass)[0]

    def _segment(self, image, names: Tuple[str, ...], mode: str,
                 min_score: float) -> SegmentationResult:
        start = time.perf_counter()
        rgb = to_rgb(image)
        for note in rgb.notes:
            log.info(note)
        text = self.text_embeddings(names)
        maps = self.score_maps(rgb, text, mode)
        with torch.inference_mode():
            labels, top = maps.best(self.chunk_bytes)
            if min_score > 0:
                labels.masked_fill_(top < min_score, UNLABELLED)
        return SegmentationResult(labels.cpu().numpy(), top.cpu().numpy(), list(names), maps,
                                  time.perf_counter() - start, rgb, min_score)
