"""PASCAL VOC-20b ("PAS-20b") evaluator: predictions outside the VOC classes count as background.

Protocol of CAT-Seg (and of OVSeg / ZegFormer before it) for ``voc_2012_test_background_sem_seg``:

* classes evaluated (``stuff_classes``): the 20 VOC classes plus ``background``; the ground truth
  keeps VOC's background pixels (VOC id 0 → ``background_class``, 20 in CAT-Seg's layout) and
  only VOC's 255 border is ignored;
* the model's vocabulary is larger than the evaluated classes: CAT-Seg segments with the 59
  names of ``voc20b.json`` (the 20 VOC classes first, in ``stuff_classes`` order, then 39
  PASCAL-Context classes such as "sky", "wall", "grass"), and its evaluator sets every predicted
  index ≥ 20 to background (``pred[pred >= 20] = 20`` in its ``VOCbEvaluator``).

Generalised here to any position of the background class: with K evaluated classes and
``b = background_class``, a predicted index ``p`` is kept when ``p < K`` and ``p ≠ b`` (a
foreground class, whose index the vocabulary shares with ``stuff_classes``) and becomes ``b``
otherwise (any extra vocabulary entry, or a "background" entry at index ``b`` itself). With
CAT-Seg's layout (b = 20, K = 21) this is exactly ``pred[pred >= 20] = 20``. The model may score
any number T of classes as long as every foreground index is below T.
"""
from typing import Optional

import torch
from detectron2.data import MetadataCatalog

from cat_seg.evaluation.sem_seg_evaluator import SemSegEvaluator


class BackgroundSemSegEvaluator(SemSegEvaluator):
    """:class:`SemSegEvaluator` for datasets whose metadata has ``background_class``.

    Predictions that are not one of the dataset's foreground classes are mapped to
    ``background_class`` before the confusion matrix is accumulated (see module doc).
    """

    def __init__(self, dataset_name: str, *, distributed: bool = True,
                 output_dir: Optional[str] = None):
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)
        background = MetadataCatalog.get(dataset_name).get("background_class", None)
        if background is None or not 0 <= int(background) < self.num_classes:
            raise ValueError(
                f"dataset {dataset_name!r} needs metadata background_class, the index of the "
                f"background class in its {self.num_classes} stuff_classes; got {background!r}"
            )
        self.background_class = int(background)
        foreground = [i for i in range(self.num_classes) if i != self.background_class]
        # The vocabulary must reach the highest foreground index.
        self._min_scores = max(foreground) + 1 if foreground else 1

    def map_prediction(self, pred: torch.Tensor, num_scores: int, file_name: str) -> torch.Tensor:
        if num_scores < self._min_scores:
            raise ValueError(
                f"{file_name}: the model scored {num_scores} classes but dataset "
                f"{self.dataset_name!r} needs at least {self._min_scores} (its foreground "
                "classes first, in stuff_classes order, then any background names)"
            )
        return torch.where(pred < self.num_classes, pred, torch.full_like(pred, self.background_class))
