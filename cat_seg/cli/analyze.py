#!/usr/bin/env python
"""How big and how fast is a model: parameters, FLOPs, latency, training step, peak memory.

    ahs-seg analyze --config-file configs/vitb_384_ahs.yaml
    ahs-seg analyze --config-file configs/vitb_384_hclip.yaml \\
        --compare configs/vitb_384_ahs.yaml --json out/analysis.json --markdown out/table.md
    ahs-seg analyze --config-file CFG --iters 5 --no-train --opts MODEL.DEVICE cuda

(``python tools/analyze_model.py ...`` is the same command.)

The cost of a model depends only on its architecture, so CLIP gets random weights
(``MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS random``; ``--keep-clip-weights`` keeps the config's) and
nothing is loaded. One input is a random square RGB image of ``--image-size`` pixels (default:
the CLIP resolution, i.e. one 384 / 336 view) and a vocabulary of ``--num-classes`` names
(default: the 171 COCO-Stuff classes), run through the model's own test-time path (whole image,
or sliding window when the config's TEST.SLIDING_WINDOW is on).

Measured, in this order:

* parameters: total, trainable, and per part, found by module type: ``CLIP`` (the
  ``CLIPBackbone`` without its adapters), ``adapters`` (H-CLIP's OFT adapters), ``head`` (the
  config's SEM_SEG_HEAD class), ``HPA``, ``SDR``, ``AFR``, and ``other``; ``inference`` counts the
  parameters a test-time forward uses (without the adapters, folded into CLIP's weights at test
  time, and the training-only HPA and SDR);
* FLOPs of one test-time forward with fvcore's ``FlopCountAnalysis`` (fvcore's convention: one
  multiply-add = one flop, as the references report GFLOPs), in total and per part; operators
  fvcore has no formula for are listed as skipped (elementwise ones it does not count anyway);
* inference latency: median (and min, mean) wall-clock time, and the median process CPU time
  (robust to other processes loading the machine), over ``--iters`` forwards after
  ``--warmup`` ones, in ``model.eval()`` under ``torch.no_grad()``, with the vocabulary's text
  embeddings encoded once before timing and served from the backbone's cache, as in an
  evaluation; the one-off cost of encoding a new vocabulary is reported apart;
* training step: median over ``--train-iters`` steps after ``--train-warmup`` of forward +
  backward + optimizer step (the training optimizer, AMP as configured) on a synthetic batch of
  ``--batch-size`` crops (INPUT.CROP.SIZE) with random labels of the training vocabulary;
* peak memory of one inference forward and one training step. GPU: ``torch.cuda``'s max
  allocated bytes. CPU: the process's resident-set high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs`` before the measured call); ``delta`` is the peak minus what was held
  before the call (weights, caches, optimizer state).

With ``--profile ROWS`` the script instead profiles one test-time forward and one training step
(forward + backward) with torch.profiler and prints the ROWS operators with the most self time
(``--markdown OUT`` writes the tables): where the time goes, before and after a change.

Like training and evaluation, the command first makes glibc keep freed memory for reuse
(:mod:`cat_seg.utils.allocator`; ``AHS_MALLOC=system`` keeps the C library's defaults).

With ``--compare CFG2 [CFG3 ...]`` every model is measured in the same process, their latency
runs interleaved (so machine load affects all alike), and the ratios CFG2 / CFG are reported;
``--markdown OUT`` writes them as one table (docs/benchmarks.md's).
The measuring is cat_seg.analysis.measure's (:func:`analyze`, :func:`compare` and
:func:`analyze_many` return plain dicts), the tables cat_seg.analysis.report's, the parts
cat_seg.analysis.parts'; this module parses the arguments and reports (through logging: the
command line shows it as plain lines, a program that calls :func:`main` may silence it).
"""
import argparse
import logging
import os
from typing import Any, Dict

from cat_seg.analysis.measure import analyze, build_analysis_model, compare, load_config, vocabulary
from cat_seg.analysis.profiling import format_profile, profile_inference, profile_training_step
from cat_seg.analysis.report import format_ratios, format_result, write_json, write_markdown
from cat_seg.utils.console import allocator_state, prepare_entry_point
from cat_seg.config import CONFIG_FILE_FIX, check_config_paths
from cat_seg.utils.paths import check_output_file, require_file, resolve_repo_path

logger = logging.getLogger(__name__)


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    # As for training and evaluation (AHS_MALLOC=system: the C library's defaults).
    logger.info(f"[analyze_model] glibc malloc: {allocator_state()}")
    # Every path before any model is built: the configs read, the files written.
    args.config_file = require_file(resolve_repo_path(args.config_file), "config file",
                                    CONFIG_FILE_FIX)
    args.compare = [require_file(resolve_repo_path(f), "config file (--compare)", CONFIG_FILE_FIX)
                    for f in args.compare or []] or None
    for name in ("json", "markdown"):
        if getattr(args, name):
            check_output_file(getattr(args, name), f"--{name} file")
    load = dict(random_weights=not args.keep_clip_weights, device=args.device)
    cfg = load_config(args.config_file, args.opts, **load)
    check_config_paths(cfg, weights=False)  # CLIP_WEIGHTS, with --keep-clip-weights
    if args.profile:
        return profile(cfg, args)
    kwargs = dict(image_size=args.image_size, num_classes=args.num_classes, warmup=args.warmup,
                  iters=args.iters, flops=not args.no_flops, inference=not args.no_inference,
                  train=not args.no_train,
                  batch_size=args.batch_size, train_warmup=args.train_warmup,
                  train_iters=args.train_iters)
    files = [args.config_file] + (args.compare or [])
    labels = args.labels or [os.path.splitext(os.path.basename(f))[0] for f in files]
    if len(labels) != len(files):
        raise ValueError(f"--labels gives {len(labels)} labels for {len(files)} configs")
    if args.compare:
        others = [load_config(f, args.opts, **load) for f in args.compare]
        output = compare(cfg, others, labels=labels, **kwargs)
        results = [output["base"], *output["compare"]]
        for result, file in zip(results, files):
            result["config_file"] = file
            logger.info(format_result(result))
        for other, ratio in zip(output["compare"], output["ratios"]):
            logger.info(format_ratios(other["label"], labels[0], ratio))
    else:
        output = analyze(cfg, labels=labels, **kwargs)
        output["config_file"] = args.config_file
        results = [output]
        logger.info(format_result(output))
    if args.markdown:
        logger.info(write_markdown(results, args.markdown))
        logger.info(f"[analyze] wrote {args.markdown}")
    if args.json:
        write_json(output, args.json)
        logger.info(f"[analyze] wrote {args.json}")
    return output


def profile(cfg, args) -> Dict[str, Any]:
    """``--profile``: the profiler tables of one test-time forward and one training step."""
    model = build_analysis_model(cfg)
    image_size = args.image_size or cfg.MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION
    output = {"config_file": args.config_file, "image_size": image_size,
              "num_classes": args.num_classes}
    if not args.no_inference:
        output["inference"] = profile_inference(model, vocabulary(args.num_classes), image_size,
                                                rows=args.profile, warmup=args.warmup)
    if not args.no_train:
        output["training step"] = profile_training_step(model, cfg, rows=args.profile,
                                                        batch_size=args.batch_size,
                                                        warmup=args.train_warmup)
    phases = {k: v for k, v in output.items() if k in ("inference", "training step")}
    label = (f"{os.path.basename(args.config_file)}, {image_size} px, {args.num_classes} classes, "
             f"{'sliding window' if cfg.TEST.SLIDING_WINDOW else 'whole image'}")
    text = format_profile(label, phases)
    logger.info(text)
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(text)
        logger.info(f"[analyze] wrote {args.markdown}")
    if args.json:
        write_json(output, args.json)
        logger.info(f"[analyze] wrote {args.json}")
    return output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--compare", metavar="CFG2", nargs="+",
                        help="config(s) measured in the same run; ratios are CFG2 / CFG")
    parser.add_argument("--labels", nargs="+", help="row names (default: config file names)")
    parser.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    parser.add_argument("--markdown", metavar="OUT", help="write a markdown table to this file")
    parser.add_argument("--image-size", type=int, help="input side (default: CLIP resolution)")
    parser.add_argument("--num-classes", type=int, default=171, help="vocabulary size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed inference runs")
    parser.add_argument("--iters", type=int, default=10, help="timed inference runs")
    parser.add_argument("--train-warmup", type=int, default=1, help="untimed training steps")
    parser.add_argument("--train-iters", type=int, default=3, help="timed training steps")
    parser.add_argument("--batch-size", type=int, default=1, help="images per training step")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    parser.add_argument("--profile", type=int, metavar="ROWS", default=0,
                        help="instead: profile one forward and one training step, top ROWS ops")
    parser.add_argument("--no-inference", action="store_true",
                        help="skip the inference latency (and its memory)")
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the config's MODEL.DEVICE)")
    parser.add_argument("--keep-clip-weights", action="store_true",
                        help="load the config's CLIP_WEIGHTS instead of random ones")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... (applied to both configs)")
    args = parser.parse_args(argv)
    for name in ("iters", "batch_size", "train_iters"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.profile < 0:
        parser.error("--profile must be >= 1 (rows of the table)")
    if args.profile and args.compare:
        parser.error("--profile measures one config; run it once per config instead of --compare")
    for name in ("warmup", "train_warmup"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


def run() -> None:
    """``tools/analyze_model.py``'s command line: console logging, then :func:`main`; bad input
    ends with one line."""
    prepare_entry_point()
    try:
        main()
    except (OSError, ValueError) as error:
        raise SystemExit(f"[analyze] {error}")
