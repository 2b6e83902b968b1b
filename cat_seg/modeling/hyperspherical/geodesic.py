"""The geodesic (great-circle) angle between directions, in a numerically stable form."""
import torch
import torch.nn.functional as F
from torch import Tensor


def geodesic_angle(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """Angle between the directions of ``a`` and ``b`` on the unit sphere, in radians, in [0, π].

    ``θ(a, b) = 2·atan2(‖â − b̂‖, ‖â + b̂‖)`` with ``x̂ = x / ‖x‖``.

    For unit vectors ``‖â − b̂‖ = 2·sin(θ/2)`` and ``‖â + b̂‖ = 2·cos(θ/2)``, so this equals
    ``acos(â·b̂)``. Unlike ``acos`` of a clamped cosine, whose derivative ``−1/√(1 − c²)`` is infinite
    at ``c = ±1`` (identical or opposite directions, e.g. student = teacher at the first step), every
    term here has a finite derivative: atan2's is bounded because ``‖â − b̂‖² + ‖â + b̂‖² = 4``, and
    torch's norm backward is 0 at a zero vector. Near ``θ = 0`` it also keeps full relative precision,
    where ``acos(c)`` loses it (``1 − c`` cancels).

    The angle is computed in float32 (float64 inputs stay float64): in bfloat16 the 8-bit mantissa
    would round every angle below ~0.09 rad to 0 in the difference ``â − b̂``. Gradients flow back to
    ``a`` and ``b`` in their own dtype. A zero input vector has no direction; it gives a finite angle
    (π/2 against any vector, 0 against another zero vector) and finite gradients, never NaN.

    Args:
        a, b: tensors of the same shape (broadcastable), any float dtype, any device.
        dim: the dimension holding the vector components.

    Returns:
        the angles, shape of ``a``/``b`` without ``dim``, float32 (float64 for float64 inputs).
    """
    compute_dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a_hat = F.normalize(a.to(compute_dtype), dim=dim)
    b_hat = F.normalize(b.to(compute_dtype), dim=dim)
    chord = torch.linalg.vector_norm(a_hat - b_hat, dim=dim)
    co_chord = torch.linalg.vector_norm(a_hat + b_hat, dim=dim)
    return 2.0 * torch.atan2(chord, co_chord)
