"""A tiny CAT-Seg head's arguments, inputs and random weights, for the head's tests."""
import torch
import torch.nn.functional as F

# A tiny head: D=16, W=24, 8x8 grid, hidden 32, 4 heads, window 4 (shift 2).
TINY = dict(embed_dim=16, clip_width=24, grid_size=(8, 8), num_templates=2, hidden_dim=32,
            text_guidance_proj_dim=8, appearance_guidance_proj_dim=8, decoder_dims=(32, 16),
            decoder_guidance_dims=(16, 8), decoder_guidance_proj_dims=(8, 4), num_layers=2,
            num_heads=4, pooling_size=(2, 2), window_size=4, class_pad_len=8)


def tiny_inputs(B=2, T=5, P=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(B, 16, 8, 8, generator=g)
    text = F.normalize(torch.randn(T, P, 16, generator=g), dim=-1)
    guidance = [torch.randn(B, 24, 8, 8, generator=g) for _ in range(2)]
    return dense, text, guidance


def randomized(module, seed=0, scale=0.2):
    """Random N(0, scale²) values everywhere (padding tokens start at 0 and would hide their
    role)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``window_partition``, (N·nW, window², C) -> (N, H, W, C): the textbook Swin's
    merge, kept as the tests' reference (the model no longer merges windows)."""
    C = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, C)
