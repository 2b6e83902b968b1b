"""The matching cost between image patches and class names, and the top-k class selection.

CAT-Seg segments by aggregating a *cost volume*: the cosine similarity of every CLIP patch
embedding with every class's text embedding, one slice per prompt template.
"""
import torch
import torch.nn.functional as F


def cosine_cost_volume(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``C[b, p, t, y, x] = <f̂[b, :, y, x], ê[b, t, p, :]>`` with ``f̂``, ``ê`` L2-normalised.

    Args:
        dense: (B, D, h, w) dense image embeddings.
        text: (B, T, P, D) text embeddings, one per class and prompt template.

    Returns:
        (B, P, T, h, w) cosine similarities in [-1, 1].
    """
    if dense.shape[0] != text.shape[0] or dense.shape[1] != text.shape[-1]:
        raise ValueError(f"dense {tuple(dense.shape)} (B,D,h,w) and text {tuple(text.shape)} "
                         "(B,T,P,D) disagree on the batch size or the embedding width D")
    dense = F.normalize(dense, dim=1)
    # Text embeddings cached in float32 meet bf16 / fp16 image features under autocast, which
    # does not cover einsum: one dtype for both.
    text = F.normalize(text, dim=-1).to(dense.dtype)
    return torch.einsum("bdhw,btpd->bpthw", dense, text)


def select_top_classes(cost: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` classes whose best patch/template similarity is highest, per image.

    CAT-Seg's class aggregation runs on a fixed number of classes; a vocabulary larger than that
    keeps, for each image, the classes CLIP already finds most similar somewhere in the image:
    ``score[b, t] = max_{p, y, x} C[b, p, t, y, x]``.

    Args:
        cost: (B, P, T, h, w) cost volume.
        k: number of classes to keep (``k <= T``).

    Returns:
        (B, k) long indices into the T classes.
    """
    score = cost.transpose(1, 2).flatten(2).amax(dim=-1)  # (B, T)
    return score.topk(k, dim=-1).indices


def gather_classes(x: torch.Tensor, indices: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` restricted, per image, to the classes ``indices`` (B, k) along its class axis ``dim``.

    E.g. a cost volume (B, P, T, h, w) with ``dim=2`` gives (B, P, k, h, w); text embeddings
    (B, T, P, D) with ``dim=1`` give (B, k, P, D).
    """
    index_shape = [1] * x.dim()
    index_shape[0], index_shape[dim] = indices.shape
    expanded = list(x.shape)
    expanded[dim] = indices.shape[1]
    return torch.gather(x, dim, indices.view(index_shape).expand(expanded))


def scatter_classes(logits: torch.Tensor, indices: torch.Tensor, num_classes: int,
                    fill_value: float = -100.0) -> torch.Tensor:
    """Put the logits of the selected classes back among all ``num_classes``.

    Args:
        logits: (B, k, H, W) logits of the selected classes.
        indices: (B, k) their indices among the ``num_classes`` classes.
        fill_value: logit given to every class that was not selected (CAT-Seg: -100, i.e. a
            sigmoid score of 0).

    Returns:
        (B, num_classes, H, W).
    """
    B, k, H, W = logits.shape
    out = logits.new_full((B, num_classes, H, W), fill_value)
    return out.scatter(1, indices[:, :, None, None].expand(B, k, H, W), logits)
