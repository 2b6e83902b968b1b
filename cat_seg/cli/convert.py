"""Convert an official CAT-Seg checkpoint into AHS-Seg's state-dict layout.

    ahs-seg convert CATSEG.pth OUTPUT.pth [--config-file configs/vitb_384_catseg.yaml]

(``python tools/convert_checkpoint.py ...`` is the same command.)

CAT-Seg (cvlab-kaist/CAT-Seg) saves a detectron2 checkpoint ``{"model": state_dict, ...}`` with

* CLIP under ``sem_seg_head.predictor.clip_model.`` in OpenAI's layout, its attention in-projection
  stored as ``attn.{q,k,v}_proj_weight`` + a packed ``attn.in_proj_bias``;
* the aggregator under ``sem_seg_head.predictor.transformer.``;
* the decoder's guidance upsamplers in the meta-architecture, ``upsample1.`` / ``upsample2.``.

The output ``{"model": state_dict}`` loads into the model of ``configs/vitb_384_catseg.yaml``
(``vitl_336_catseg.yaml`` for ViT-L) with ``MODEL.WEIGHTS OUTPUT.pth``; same weights, same logits.
With ``--config-file`` the converted weights are also loaded, strictly, into that model as a check.
The input is read with ``torch.load(weights_only=True)``: a file that would run code when
unpickled is refused.
The conversion is cat_seg.engine.catseg_checkpoint's; this script parses the arguments and
writes the file.
"""
import argparse
import logging
import os

import torch

from ..engine.catseg_checkpoint import (
    ConversionError, check_against_config, convert_catseg_state_dict, load_catseg_checkpoint)
from ..utils.paths import resolve_repo_path

logger = logging.getLogger(__name__)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="official CAT-Seg checkpoint (.pth)")
    parser.add_argument("output", help="where to write the converted checkpoint")
    parser.add_argument("--config-file", default=None,
                        help="also check that the result loads into this config's model")
    args = parser.parse_args(argv)
    converted = convert_catseg_state_dict(load_catseg_checkpoint(args.input))
    if args.config_file:
        args.config_file = resolve_repo_path(args.config_file)
        check_against_config(converted, args.config_file)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    torch.save({"model": converted}, args.output)
    logger.info(f"wrote {len(converted)} tensors to {args.output}"
          + (f" (checked against {args.config_file})" if args.config_file else ""))


def run() -> None:
    """``tools/convert_checkpoint.py``'s command line: bad input ends with one line."""
    from ..utils.console import prepare_entry_point

    prepare_entry_point(allocator=False)
    try:
        main()
    except (ConversionError, FileNotFoundError) as error:
        raise SystemExit(f"convert_checkpoint: {error}")
