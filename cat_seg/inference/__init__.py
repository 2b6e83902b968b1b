"""Inference building blocks shared by the evaluation, :class:`cat_seg.predictor.Segmenter` and
the demos: per-class scores kept at the model's resolution and brought to the image's size a few
classes at a time (:mod:`.score_maps`), and the image inputs the predictor accepts
(:mod:`.image_inputs`)."""
from .score_maps import ScoreMaps

__all__ = ["ScoreMaps"]
