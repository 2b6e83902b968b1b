"""Ground-truth labels at the resolution of the CLIP patch grid, from area fractions."""
from typing import Tuple

import torch
from torch import Tensor

# Label of a patch that has no class (no labelled pixel, or no class pure enough).
PATCH_IGNORE = -1

# Slack of the purity comparison for float rounding of ``purity · count`` (0.7·10 = 7.000000000000001).
_PURITY_RTOL = 1e-9


def patch_labels(
    labels: Tensor, grid_size: Tuple[int, int], num_classes: int, purity: float, ignore_value: int
) -> Tensor:
    """The class of each feature-grid patch: its majority class, if that class is pure enough.

    For each patch window ``w`` and class ``c``::

        fraction_c(w) = #{pixels of class c in w} / #{labelled pixels in w}     (ignored pixels excluded)
        y(w) = argmax_c fraction_c(w)   if  max_c fraction_c(w) ≥ purity,  else PATCH_IGNORE (-1)

    i.e. the one-hot label map average-pooled to the grid (never nearest-neighbour sampled), with the
    windows of ``adaptive_avg_pool2d``: window i spans rows [⌊i·H/h⌋, ⌈(i+1)·H/h⌉) (likewise for
    columns), the plain k×k blocks when H = k·h. ``purity`` must be > 0.5 so that at most one class
    can reach it (no ties, no multi-class patches). A window without labelled pixels gets PATCH_IGNORE.

    The per-window class counts are exact integers from one ``bincount`` over the pixels (a pixel on
    the overlap of two windows counts for both), so memory is O(B·H·W + B·h·w·num_classes) and no
    one-hot map is materialised.

    Args:
        labels: (B, H, W) integer class indices in [0, num_classes) or ``ignore_value``.
        grid_size: (h, w) of the feature grid, h ≤ H and w ≤ W.
        num_classes: size of the vocabulary the labels index.
        purity: threshold on the majority class's fraction, in (0.5, 1].
        ignore_value: label of unlabelled pixels.

    Returns:
        (B, h, w) int64 class indices, PATCH_IGNORE where the patch has no pure class.
    """
    if labels.dim() != 3 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be a (B, H, W) integer class map, got dtype {labels.dtype} and shape "
            f"{tuple(labels.shape)}; pass the per-pixel ground truth (e.g. targets of the mapper)"
        )
    if not 0.5 < purity <= 1.0:
        raise ValueError(
            f"purity must be in (0.5, 1] so that a patch has at most one pure class, got {purity}; "
            "set MODEL.SEM_SEG_HEAD.PATCH_LABEL_PURITY accordingly"
        )
    h, w = int(grid_size[0]), int(grid_size[1])
    batch, height, width = labels.shape
    if not (0 < h <= height and 0 < w <= width):
        raise ValueError(
            f"feature grid {h}x{w} must not be finer than the label map {height}x{width}; "
            "pass labels at (at least) the feature resolution"
        )
    labels = labels.long()
    labelled = labels != ignore_value
    out_of_range = labelled & ((labels < 0) | (labels >= num_classes))
    if bool(out_of_range.any()):
        bad = labels[out_of_range].unique()[:8].tolist()
        raise ValueError(
            f"labels hold values {bad} outside [0, {num_classes}) that are not the ignore value "
            f"{ignore_value}; the labels must index the vocabulary the features are trained against"
        )

    rows, row_cells = _window_membership(height, h, labels.device)
    cols, col_cells = _window_membership(width, w, labels.device)
    bins = num_classes + 1  # the last bin collects ignored pixels
    classes = torch.where(labelled, labels, num_classes)[:, rows][:, :, cols]  # (B, R, S), R ≥ H, S ≥ W
    cells = row_cells.view(1, -1, 1) * w + col_cells.view(1, 1, -1) + torch.arange(
        batch, device=labels.device
    ).view(-1, 1, 1) * (h * w)
    counts = torch.bincount((cells * bins + classes).flatten(), minlength=batch * h * w * bins)
    counts = counts.view(batch, h, w, bins)[..., :num_classes]
    majority_count, majority = counts.max(dim=-1)
    labelled_count = counts.sum(dim=-1)
    threshold = labelled_count.double() * (purity * (1.0 - _PURITY_RTOL))
    pure = (labelled_count > 0) & (majority_count.double() >= threshold)
    return torch.where(pure, majority, torch.full_like(majority, PATCH_IGNORE))


def _window_membership(size: int, cells: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Every (pixel index, window index) pair of adaptive pooling from ``size`` to ``cells`` windows."""
    index = torch.arange(cells, device=device)
    start = torch.div(index * size, cells, rounding_mode="floor")
    end = torch.div((index + 1) * size + cells - 1, cells, rounding_mode="floor")
    window = torch.repeat_interleave(index, end - start)
    offset = torch.arange(window.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(end - start, 0) - (end - start), end - start
    )
    return start[window] + offset, window
