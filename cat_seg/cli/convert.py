"""Convert an official CAT-Seg checkpoint into AHS-Seg's state-dict layout.

    ahs-seg convert SOURCE OUTPUT.pth [--config-file configs/vitb_384_catseg.yaml] [--sha256 HEX]
    ahs-seg convert --hf-repo OWNER/NAME --hf-file FILE OUTPUT.pth [--hf-revision REV] ...
    ahs-seg convert hf://spaces/hamacojr/CAT-Seg-weights/model_base.pth model_base_ahs.pth \
        --config-file configs/vitb_384_catseg.yaml          # the official ViT-B checkpoint

(``python tools/convert_checkpoint.py ...`` is the same command.)

SOURCE is a local file, an ``http(s)://`` URL or ``hf://owner/name[@revision]/file`` (a file of a
Hugging Face model repository, as ``--hf-repo`` / ``--hf-file``; ``hf://spaces/owner/name/file``
for a Space, where CAT-Seg publishes its weights). A remote file is downloaded
once with a progress bar into the cache (``$AHS_SEG_CACHE``, else ``~/.cache/ahs-seg``;
:mod:`cat_seg.utils.download`), its sha256 printed and, with ``--sha256``, checked. Beside
OUTPUT, ``OUTPUT.source.json`` records where the weights came from and the source's sha256.

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
The conversion is cat_seg.engine.catseg_checkpoint's; this module parses the arguments, fetches
the source and writes the file.
"""
import argparse
import json
import logging

from ..engine.catseg_checkpoint import (
    ConversionError, check_against_config, convert_catseg_state_dict, load_downloaded_checkpoint,
    save_converted)
from ..utils.download import fetch_weights, file_sha256, hf_url, source_url
from ..config import CONFIG_FILE_FIX
from ..utils.paths import check_output_file, require_file, resolve_repo_path

logger = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    parser.add_argument("paths", nargs="+", metavar="SOURCE OUTPUT",
                        help="the official checkpoint (file, URL or hf://owner/name/file; "
                        "omitted with --hf-repo) and where to write the converted one")
    parser.add_argument("--config-file", default=None,
                        help="also check that the result loads into this config's model")
    parser.add_argument("--hf-repo", metavar="OWNER/NAME",
                        help="Hugging Face repository of the checkpoint (spaces/OWNER/NAME for a "
                        "Space)")
    parser.add_argument("--hf-file", metavar="FILE", help="the checkpoint's name in --hf-repo")
    parser.add_argument("--hf-revision", default="main", help="branch, tag or commit (main)")
    parser.add_argument("--sha256", help="expected sha256 of the source file (hex)")
    parser.add_argument("--no-progress", action="store_true", help="no download progress bar")
    args = parser.parse_args(argv)
    if args.hf_repo or args.hf_file:
        if not (args.hf_repo and args.hf_file):
            parser.error("--hf-repo and --hf-file go together")
        if len(args.paths) != 1:
            parser.error("with --hf-repo / --hf-file give only OUTPUT")
        args.source = hf_url(args.hf_repo, args.hf_file, args.hf_revision)
    elif len(args.paths) != 2:
        parser.error("expected SOURCE OUTPUT (or --hf-repo OWNER/NAME --hf-file FILE OUTPUT)")
    else:
        args.source = args.paths[0]
    args.output = args.paths[-1]
    return args


def main(argv=None) -> dict:
    """Fetch, convert, check and write; returns the record written to ``OUTPUT.source.json``."""
    args = parse_args(argv)
    # Every path before the download and the conversion: the output, the config, the source.
    check_output_file(args.output, "converted checkpoint (OUTPUT)")
    if args.config_file:
        args.config_file = require_file(resolve_repo_path(args.config_file), "config file",
                                        CONFIG_FILE_FIX)
    path = fetch_weights(args.source, args.sha256, progress=not args.no_progress)
    converted = convert_catseg_state_dict(load_downloaded_checkpoint(path))
    if args.config_file:
        check_against_config(converted, args.config_file)
    save_converted(converted, args.output)
    record = {"source": args.source, "url": source_url(args.source), "file": path,
              "sha256": file_sha256(path), "config_file": args.config_file,
              "tensors": len(converted)}
    with open(args.output + ".source.json", "w") as f:
        json.dump(record, f, indent=2)
    logger.info("source sha256 %s  %s", record["sha256"], path)
    logger.info(f"wrote {len(converted)} tensors to {args.output}"
                + (f" (checked against {args.config_file})" if args.config_file else ""))
    return record


def run() -> None:
    """``tools/convert_checkpoint.py``'s command line: bad input ends with one line."""
    from ..utils.console import prepare_entry_point

    prepare_entry_point(allocator=False)
    try:
        main()
    except (ConversionError, OSError, ValueError) as error:
        raise SystemExit(f"convert_checkpoint: {error}")
