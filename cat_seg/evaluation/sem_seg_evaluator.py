"""Confusion-matrix semantic-segmentation evaluator (detectron2 ``DatasetEvaluator``).

Per image: ``pred = argmax_t scores[t]`` of the model's (T, H, W) scores at the original image
size, the ground truth is read from the record's ``sem_seg_file_name``, ignore-label pixels are
dropped and ``confusion[gt, pred] += 1`` is accumulated with ``torch.bincount`` on the scores'
device. At ``evaluate()`` the per-process matrices are summed over all processes and turned into
metrics by :func:`cat_seg.evaluation.metrics.compute_metrics`.
"""
import csv
import io
import logging
import os
from collections import Counter, OrderedDict
from typing import List, Optional, Sequence

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from cat_seg.data.label_io import read_record_label
from cat_seg.evaluation.metrics import SegmentationMetrics, compute_metrics

logger = logging.getLogger(__name__)

# How many offending label values an error message lists.
_MAX_VALUES_IN_MESSAGE = 20


def merge_confusion_matrices(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum per-process confusion matrices (each (K, K) int64) into one, on the CPU."""
    if not matrices:
        raise ValueError("no confusion matrix to merge")
    shapes = {tuple(m.shape) for m in matrices}
    if len(shapes) != 1:
        raise ValueError(
            f"confusion matrices of different shapes {sorted(shapes)} cannot be merged: every "
            "process must evaluate the same dataset with the same class list"
        )
    return torch.stack([m.to("cpu", torch.int64) for m in matrices]).sum(dim=0)


class SemSegEvaluator(DatasetEvaluator):
    """Semantic-segmentation evaluator on one dataset.

    Reads from ``MetadataCatalog.get(dataset_name)``: ``stuff_classes`` (K names) and
    ``ignore_label``. ``outputs[i]["sem_seg"]`` must be (K, H, W) scores over the dataset's own
    classes, at the size of the label map; label values outside ``[0, K)`` other than the
    ignore label stop the evaluation with an error naming the file.

    ``evaluate()`` returns ``{"sem_seg": {"mIoU", "mIoU_gt", "fwIoU", "mACC", "pACC",
    "chance_mIoU", "IoU-<class>"..., "ACC-<class>"...}}`` in percent (formulas in
    :mod:`cat_seg.evaluation.metrics`) on the main process and ``None`` elsewhere. After it,
    :attr:`merged_confusion` holds the (K, K) matrix summed over processes,
    :attr:`metrics` the merged :class:`SegmentationMetrics` and
    :meth:`write_per_class_csv` writes the per-class table; with ``output_dir`` set the table
    is written to ``<output_dir>/sem_seg_per_class_<dataset_name>.csv`` automatically.
    """

    def __init__(self, dataset_name: str, *, distributed: bool = True,
                 output_dir: Optional[str] = None):
        meta = MetadataCatalog.get(dataset_name)
        for field in ("stuff_classes", "ignore_label"):
            if not hasattr(meta, field):
                raise ValueError(
                    f"dataset {dataset_name!r} has no metadata field {field!r}: register it "
                    "(cat_seg.data) before building its evaluator"
                )
        self.dataset_name = dataset_name
        self.class_names: List[str] = list(meta.stuff_classes)
        duplicates = sorted(n for n, c in Counter(self.class_names).items() if c > 1)
        if duplicates:
            raise ValueError(
                f"dataset {dataset_name!r} lists the classes {duplicates} more than once; "
                "per-class results would overwrite each other. Fix its class list"
            )
        self.num_classes = len(self.class_names)
        self.ignore_label = int(meta.ignore_label)
        self._distributed = distributed
        self._output_dir = output_dir
        self.metrics: Optional[SegmentationMetrics] = None
        self.reset()

    def reset(self):
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.merged_confusion = None
        self.metrics = None

    # ------------------------------------------------------------------ accumulation
    def map_prediction(self, pred: torch.Tensor, num_scores: int, file_name: str) -> torch.Tensor:
        """Turn the argmax over the model's ``num_scores`` classes into dataset class indices.

        Here the model must score exactly the dataset's classes (identity map); the PAS-20b
        variant overrides this to send every non-VOC prediction to background.
        """
        if num_scores != self.num_classes:
            raise ValueError(
                f"{file_name}: the model scored {num_scores} classes but dataset "
                f"{self.dataset_name!r} has {self.num_classes}; evaluate with the dataset's "
                "own vocabulary (its metadata stuff_classes)"
            )
        return pred

    def process(self, inputs, outputs):
        for record, output in zip(inputs, outputs):
            if "sem_seg_file_name" not in record:
                raise KeyError(
                    f"input {record.get('file_name', record)!r} has no 'sem_seg_file_name'; "
                    "the evaluator needs the dataset record's label path (keep it in the mapper)"
                )
            label_path = record["sem_seg_file_name"]
            scores = output["sem_seg"]
            if scores.dim() != 3:
                raise ValueError(
                    f"{label_path}: expected (T, H, W) scores, got shape {tuple(scores.shape)}"
                )
            pred = scores.argmax(dim=0)
            if not bool(torch.isfinite(scores).all()):
                raise FloatingPointError(
                    f"the model produced NaN/inf scores for the image of {label_path}"
                )
            pred = self.map_prediction(pred, scores.shape[0], label_path)
            # Class indices, a folder dataset's label offset applied (cat_seg.data.label_io).
            gt = torch.from_numpy(read_record_label(record, self.ignore_label)).to(pred.device)
            if gt.shape != pred.shape:
                image_path = record.get("file_name", "?")
                expected = (record.get("height"), record.get("width"))
                if tuple(pred.shape) == expected or None in expected:
                    raise ValueError(
                        f"the data is inconsistent, not the model: label {label_path} is "
                        f"{gt.shape[0]}x{gt.shape[1]} but its image {image_path} is "
                        f"{pred.shape[0]}x{pred.shape[1]} (the prediction has the image's size); "
                        "an image and its label must have the same size — re-run the dataset's "
                        "prepare script (its summary lists the pairs that differ)"
                    )
                raise ValueError(
                    f"{label_path}: the prediction is {tuple(pred.shape)} but the image "
                    f"{image_path} is {expected[0]}x{expected[1]}; the model must return scores at "
                    "the original image size"
                )
            self._accumulate(gt, pred, label_path)

    def _accumulate(self, gt: torch.Tensor, pred: torch.Tensor, label_path: str) -> None:
        k = self.num_classes
        labelled = gt != self.ignore_label
        bad = labelled & ((gt < 0) | (gt >= k))
        if bool(bad.any()):
            values = torch.unique(gt[bad]).tolist()
            shown = values[:_MAX_VALUES_IN_MESSAGE]
            more = f" (and {len(values) - len(shown)} more)" if len(values) > len(shown) else ""
            raise ValueError(
                f"label file {label_path} holds values {shown}{more} outside the "
                f"{k} classes [0, {k}) of dataset {self.dataset_name!r} (ignore label "
                f"{self.ignore_label}); the labels do not match the class list — re-run the "
                "dataset's prepare script or fix its metadata"
            )
        index = gt[labelled] * k + pred[labelled]
        counts = torch.bincount(index, minlength=k * k).reshape(k, k)
        if self._confusion.device != counts.device:
            self._confusion = self._confusion.to(counts.device)
        self._confusion += counts

    # ------------------------------------------------------------------ results
    @property
    def confusion(self) -> torch.Tensor:
        """This process's (K, K) confusion matrix ``[gt, pred]`` so far."""
        return self._confusion

    def _gather_confusions(self) -> Optional[List[torch.Tensor]]:
        """All processes' matrices on the main process, ``None`` on the others."""
        local = self._confusion.cpu()
        if not self._distributed or comm.get_world_size() == 1:
            return [local]
        comm.synchronize()
        gathered = comm.all_gather(local)
        return gathered if comm.is_main_process() else None

    def evaluate(self):
        matrices = self._gather_confusions()
        if matrices is None:
            return None
        self.merged_confusion = merge_confusion_matrices(matrices).numpy()
        self.metrics = compute_metrics(self.merged_confusion)
        m = self.metrics
        res = OrderedDict(
            [("mIoU", m.miou), ("mIoU_gt", m.miou_gt), ("fwIoU", m.fwiou),
             ("mACC", m.macc), ("pACC", m.pacc), ("chance_mIoU", m.chance_miou)]
        )
        for name, value in zip(self.class_names, m.iou):
            res[f"IoU-{name}"] = float(value)
        for name, value in zip(self.class_names, m.acc):
            res[f"ACC-{name}"] = float(value)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            path = os.path.join(self._output_dir, f"sem_seg_per_class_{self.dataset_name}.csv")
            self.write_per_class_csv(path)
            logger.info("per-class IoU of %s written to %s", self.dataset_name, path)
        logger.info(
            "%s: mIoU %.2f (mIoU_gt %.2f), fwIoU %.2f, mACC %.2f, pACC %.2f",
            self.dataset_name, m.miou, m.miou_gt, m.fwiou, m.macc, m.pacc,
        )
        return OrderedDict({"sem_seg": res})

    def class_groups(self) -> Optional[List[str]]:
        """A group name per class for the CSV's ``group`` column, or None for no such column
        (the generalized-protocol evaluator names seen and held-out classes)."""
        return None

    def write_per_class_csv(self, path: str) -> None:
        """Write ``class,[group,]IoU,ACC,gt_pixels,pred_pixels`` rows (percent; empty cell for
        NaN); the ``group`` column appears when :meth:`class_groups` gives one."""
        if self.metrics is None:
            raise RuntimeError("call evaluate() before write_per_class_csv()")
        m = self.metrics
        groups = self.class_groups()
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class"] + (["group"] if groups else []) +
                            ["IoU", "ACC", "gt_pixels", "pred_pixels"])
            for i, name in enumerate(self.class_names):
                row = [name] + ([groups[i]] if groups else []) + [
                    _fmt(m.iou[i]), _fmt(m.acc[i]),
                    int(m.gt_pixels[i]), int(m.pred_pixels[i]),
                ]
                if "#" in name:  # quoted: a reader's comment="#" would cut the row there
                    rest = io.StringIO()  # the other cells as the writer writes them
                    csv.writer(rest).writerow(row[1:])
                    f.write('"' + name.replace('"', '""') + '",' + rest.getvalue())
                else:
                    writer.writerow(row)


def _fmt(value: float) -> str:
    return "" if value != value else f"{value:.4f}"
