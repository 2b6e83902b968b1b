"""One image's per-class sigmoid scores, kept at the model's resolution until they are asked for.

The model's logits are small: (T, 4h, 4w) per view. What is large is the step that brings them to
the image's size: (T, H, W) float32 is 7.2 GB for 150 classes on a 12-megapixel photo. Every step
of that (bilinear resizes, sigmoid, the sliding window's fold and averaging) treats each class
on its own, so :class:`ScoreMaps` runs it for a few classes at a time with the same operations
on the same values: a chunk of classes gives exactly the rows of the whole.

The evaluation asks for every class at once (:meth:`ScoreMaps.scores`, what it always computed);
the predictor and the demos ask for the label map (:meth:`ScoreMaps.best`: the running maximum
over chunks) and for single classes only when a per-class picture is wanted.
"""
from typing import Callable, Iterator, Optional, Tuple

import torch

# Default budget of one chunk's working memory (bytes): a 12-megapixel image then goes one class at
# a time, a 640 x 480 one about 40 classes at a time.
DEFAULT_CHUNK_BYTES = 256 * 2 ** 20


class ScoreMaps:
    """Sigmoid scores (T, H, W) of one image, computed on demand for any range of classes.

    Args:
        num_classes: T.
        size: (H, W), the output size.
        compute: ``compute(classes: slice) -> (len(classes), H, W)`` float32 scores of those
            classes (the model's own test-time steps, closed over its logits).
        bytes_per_class: working memory ``compute`` needs per class (output and intermediates),
            used to size the chunks.
    """

    def __init__(self, num_classes: int, size: Tuple[int, int],
                 compute: Callable[[slice], torch.Tensor], bytes_per_class: int):
        self.num_classes = int(num_classes)
        self.size = (int(size[0]), int(size[1]))
        self._compute = compute
        self.bytes_per_class = max(1, int(bytes_per_class))

    def scores(self, classes: Optional[slice] = None) -> torch.Tensor:
        """(c, H, W) float32 scores of ``classes`` (default: all T, the evaluation's output)."""
        return self._compute(slice(0, self.num_classes) if classes is None else classes)

    def class_scores(self, index: int) -> torch.Tensor:
        """(H, W) float32 scores of class ``index``."""
        if not -self.num_classes <= index < self.num_classes:
            raise IndexError(f"class index {index} is outside the {self.num_classes} classes")
        index %= self.num_classes
        return self._compute(slice(index, index + 1))[0]

    def classes_per_chunk(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        return max(1, min(self.num_classes, int(chunk_bytes) // self.bytes_per_class))

    def chunks(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES
               ) -> Iterator[Tuple[int, torch.Tensor]]:
        """``(first class index, (c, H, W) scores)`` over all classes, a few at a time."""
        step = self.classes_per_chunk(chunk_bytes)
        for start in range(0, self.num_classes, step):
            yield start, self._compute(slice(start, min(start + step, self.num_classes)))

    def best(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(labels, top)``: the (H, W) int64 index of the highest-scoring class per pixel and its
        (H, W) float32 score; the first class wins a tie, as ``scores().argmax(0)``.

        Peak memory: one chunk plus two (H, W) maps, never (T, H, W)."""
        labels = top = None
        for start, chunk in self.chunks(chunk_bytes):
            chunk_top, chunk_labels = chunk.max(dim=0)
            if labels is None:
                labels, top = chunk_labels + start, chunk_top
                continue
            # Strictly greater: on a tie the earlier class (already in ``labels``) stays.
            better = chunk_top > top
            labels = torch.where(better, chunk_labels + start, labels)
            top = torch.where(better, chunk_top, top)
        return labels, top
