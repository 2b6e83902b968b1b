"""AHS modules, one per file, and what they share (geodesic angle, area-fraction patch labels).

The public entry point is :mod:`cat_seg.modeling.hyperspherical_innovations`.
"""
