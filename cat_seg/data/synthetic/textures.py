"""Procedural texture fields for the synthetic dataset.

Every texture is a function ``(height, width, period, rng) -> field`` returning a float32 (H, W)
array in [-1, 1]; the renderer adds ``contrast * field`` to the class colour. ``period`` is the
texture's spatial period in pixels; a random phase / offset drawn from ``rng`` keeps textures of
different images from lining up.
"""
from typing import Callable, Dict

import numpy as np

Texture = Callable[[int, int, float, np.random.Generator], np.ndarray]


def _grid(height, width, rng, period):
    """Pixel coordinates (y, x) shifted by a random offset of up to four periods."""
    oy, ox = rng.uniform(0, 4 * period, size=2)
    y = np.arange(height, dtype=np.float32)[:, None] + np.float32(oy)
    x = np.arange(width, dtype=np.float32)[None, :] + np.float32(ox)
    return y, x


def value_noise(height, width, cell_h, cell_w, rng) -> np.ndarray:
    """Smooth noise in [-1, 1]: uniform random values on a grid of cells, bilinearly upsampled."""
    gh, gw = int(np.ceil(height / cell_h)) + 2, int(np.ceil(width / cell_w)) + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
    fy = np.arange(height, dtype=np.float32) / np.float32(cell_h) + np.float32(rng.uniform(0, 1))
    fx = np.arange(width, dtype=np.float32) / np.float32(cell_w) + np.float32(rng.uniform(0, 1))
    y0, x0 = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - y0)[:, None], (fx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    bottom = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return top * (1 - ty) + bottom * ty


def gradient(height, width, period, rng):
    """Vertical ramp (lighter at the top), with faint large-scale noise."""
    ramp = np.linspace(1.0, -1.0, height, dtype=np.float32)[:, None]
    return np.clip(0.8 * ramp + 0.2 * value_noise(height, width, 48, 48, rng), -1, 1)


def grain(height, width, period, rng):
    """Independent per-pixel noise (sand, asphalt, gravel)."""
    return np.clip(0.5 * rng.standard_normal((height, width), dtype=np.float32), -1, 1)


def blobs(height, width, period, rng):
    """Smooth noise with cells of ``period`` pixels: foliage, rock and lava with small cells,
    gentle shading of plain surfaces (car paint, balloons) with large ones."""
    return value_noise(height, width, period, period, rng)


def streaks(height, width, period, rng):
    """Noise stretched vertically: tall thin strands (grass blades)."""
    return value_noise(height, width, 4 * period, period / 2, rng)


def waves(height, width, period, rng):
    """Horizontal ripples bent by a slower sine (water)."""
    y, x = _grid(height, width, rng, period)
    return np.sin(2 * np.pi * (y + 3 * np.sin(2 * np.pi * x / (5 * period))) / period)


def rings(height, width, period, rng):
    """Horizontal grain lines displaced by noise (wood)."""
    y, _ = _grid(height, width, rng, period)
    wobble = 4 * period * value_noise(height, width, 6 * period, 12 * period, rng)
    return np.sin(2 * np.pi * (y + wobble) / period)


def stripes(height, width, period, rng):
    """Vertical square-wave stripes (fence boards, boat planks)."""
    _, x = _grid(height, width, rng, period)
    return np.broadcast_to(np.where((x % period) < period / 2, 1.0, -1.0), (height, width))


def diagonal(height, width, period, rng):
    """Diagonal sine stripes."""
    y, x = _grid(height, width, rng, period)
    return np.sin(2 * np.pi * (x + y) / period)


def checker(height, width, period, rng):
    """Checkerboard of ``period``-pixel squares."""
    y, x = _grid(height, width, rng, period)
    return np.where(((y // period) + (x // period)) % 2 == 0, 1.0, -1.0)


def dots(height, width, period, rng):
    """Bright round dots on a square lattice (petals)."""
    y, x = _grid(height, width, rng, period)
    dy, dx = (y % period) - period / 2, (x % period) - period / 2
    return np.where(dy * dy + dx * dx < (period / 3) ** 2, 1.0, -0.5)


def grid(height, width, period, rng):
    """Dark lines every ``period`` pixels (window frames)."""
    y, x = _grid(height, width, rng, period)
    on_line = ((y % period) < 2) | ((x % period) < 2)
    return np.where(on_line, -1.0, 0.4)


def bricks(height, width, period, rng):
    """Brick courses of height ``period``, bricks two periods long, each a slightly different
    shade, separated by light mortar lines; every other course is shifted by half a brick."""
    y, x = _grid(height, width, rng, period)
    course = (y // period).astype(np.int64)
    shifted = x + (course % 2) * period
    brick = (shifted // (2 * period)).astype(np.int64)
    shade = rng.uniform(-0.3, 0.3, size=(int(course.max()) + 1, int(brick.max()) + 1))
    mortar = ((y % period) < 2) | ((shifted % (2 * period)) < 2)
    return np.where(mortar, 1.0, shade[course, brick] - 0.2)


TEXTURES: Dict[str, Texture] = {
    "gradient": gradient, "grain": grain, "blobs": blobs, "streaks": streaks, "waves": waves,
    "rings": rings, "stripes": stripes, "diagonal": diagonal, "checker": checker, "dots": dots,
    "grid": grid, "bricks": bricks,
}
