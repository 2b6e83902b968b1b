"""Segment images into any class names from Python: load a model once, call it per image.

    from cat_seg import Segmenter
    seg = Segmenter.from_config("configs/synthetic/quickstart.yaml", "output/quickstart/model_final.pth", device="cpu")
    result = seg("photo.jpg", ["sky", "grass", "lava"])

``result.labels`` is the (H, W) label map (indices into ``result.class_names``),
``result.sigmoid_scores`` the (T, H, W) per-class scores. tools/demo.py and tools/web_demo.py run
exactly this; the evaluation runs the same model path (:meth:`cat_seg.AHSSeg.inference`).
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


class SegmentationResult:
    """One image segmented into ``class_names``.

    Attributes:
        labels: (H, W) int64 label map at the input's size (after EXIF orientation): per pixel
            the index into ``class_names`` of the class with the highest score.
        class_names: the vocabulary of the call (T names), in its order.
        seconds: wall time of this image (reading, model, label map).
        top_scores: (H, W) float32, the winning class's sigmoid score per pixel.
        notes: things done to the input the caller may want to know (EXIF orientation).
        name: the input's name (its path, or its kind).
        sigmoid_scores: (T, H, W) float32, each class's independent sigmoid score per pixel, the
            model's output. They are *not* probabilities over the classes: they do not sum to 1
            and a class can score low everywhere. Computed at first access, a few classes at a
            time, then kept: T·H·W·4 bytes (150 classes on a 12-megapixel photo: 7.2 GB); for one
            class use :meth:`class_scores`, which keeps nothing.
    """

    def __init__(self, labels: np.ndarray, top_scores: np.ndarray, class_names: List[str],
                 score_maps: ScoreMaps, seconds: float, image: RGBImage):
        self.labels = labels
        self.top_scores = top_scores
        self.class_names = class_names
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
        """{class index: fraction of the pixels} of the classes in ``labels``."""
        present, counts = np.unique(self.labels, return_counts=True)
        return {int(c): float(n) / self.labels.size for c, n in zip(present, counts)}

    def __repr__(self) -> str:
        height, width = self.labels.shape
        return (f"SegmentationResult({self.name!r}, {width}x{height} px, "
                f"{len(self.class_names)} classes, {self.seconds:.2f} s)")


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
    whole image (faster, less accurate: 63.7 against 75.2 held-out mIoU on Syn-unseen with the
    quick-start weights). Both run the model built with the test protocol's class-aggregation
    pooling ``[1, 1]`` (:data:`cat_seg.engine.benchmarks.TEST_PROTOCOL`).

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
                    allow_unexpected_weights: bool = False,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> "Segmenter":
        """Build the model of ``config_file`` with the test protocol and load ``weights``.

        Args:
            config_file: a config (relative paths: from the current folder first, then from the
                repository, so ``configs/...`` works from any folder).
            weights: checkpoint a training run wrote (``OUTPUT_DIR/model_final.pth``), resolved
                like ``config_file``; None: the config's MODEL.WEIGHTS.
            device: "cpu", "cuda", "cuda:1", "auto"...; None: the config's MODEL.DEVICE.
            opts: config overrides ``[KEY, VALUE, ...]``, applied after the test protocol.
            allow_unexpected_weights: drop (and list in ``ignored_weights``) checkpoint weights
                the model does not have, instead of stopping.
        """
        from .demo.images import build_demo_model, setup_cfg

        cfg = setup_cfg(config_file, opts, device=device, weights=weights,
                        allow_unexpected_weights=allow_unexpected_weights)
        model, ignored = build_demo_model(cfg)
        return cls(model, cfg, chunk_bytes=chunk_bytes, ignored_weights=ignored)

    # ------------------------------------------------------------------ calls
    def __call__(self, images, class_names: Sequence[str], *, mode: str = "sliding"
                 ) -> Union[SegmentationResult, List[SegmentationResult]]:
        """Segment one image (-> a result) or a list / tuple of images (-> a list of results)
        into ``class_names``; see the class docstring for the inputs and ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; use one of {list(MODES)} (\"sliding\": the "
                             "evaluation's protocol)")
        names = check_class_names(class_names)
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("the list of images is empty")
            return [self._segment(image, names, mode) for image in images]
        return self._segment(images, names, mode)

    def text_embeddings(self, class_names: Sequence[str]) -> torch.Tensor:
        """(T, P, D) text embeddings of ``class_names``, cached per vocabulary."""
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
            text = backbone.encode_text(list(names))
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
        with torch.inference_mode():
            return self.model.inference([{"image": tensor, "height": height, "width": width}],
                                        text, sliding_window=(mode == "sliding"))[0]

    def _segment(self, image, names: Tuple[str, ...], mode: str) -> SegmentationResult:
        start = time.perf_counter()
        rgb = to_rgb(image)
        for note in rgb.notes:
            log.info(note)
        text = self.text_embeddings(names)
        maps = self.score_maps(rgb, text, mode)
        with torch.inference_mode():
            labels, top = maps.best(self.chunk_bytes)
        return SegmentationResult(labels.cpu().numpy(), top.cpu().numpy(), list(names), maps,
                                  time.perf_counter() - start, rgb)
