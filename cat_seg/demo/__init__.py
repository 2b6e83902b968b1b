"""Segment your own images into your own classes: the demos' library.

:mod:`cat_seg.demo.images` is tools/demo.py's work (files in, pictures out) around the one
inference path, :class:`cat_seg.predictor.Segmenter`; :mod:`cat_seg.demo.web` the browser page of
tools/web_demo.py built on both.
"""
from .images import (build_demo_model, check_images, check_vocabulary, class_fractions,
                     downscale, find_images, load_weights, output_names, parse_vocabulary,
                     read_demo_image, run_demo, save_label_map, save_probability_maps, setup_cfg,
                     write_outputs)

__all__ = ["build_demo_model", "check_images", "check_vocabulary", "class_fractions", "downscale",
           "find_images", "load_weights", "output_names", "parse_vocabulary", "read_demo_image",
           "run_demo", "save_label_map", "save_probability_maps", "setup_cfg", "write_outputs"]
