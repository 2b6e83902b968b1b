#!/usr/bin/env python
"""Browser demo: upload an image, type class names, see the segmentation.

    pip install -r requirements-demo.txt        # once: gradio (an optional extra)
    bash run_ahs.sh configs/synthetic/quickstart.yaml   # once: the quick-start model
    python tools/web_demo.py                    # then open http://127.0.0.1:7860
    python tools/web_demo.py --config-file CFG --weights W [--port 7860] [--host 0.0.0.0]

The page has an image upload with built-in examples (synthetic scenes of the held-out classes
lava, ice, gravel, carpet, balloon, kite and of the seen ones, drawn by the dataset's own
generator), a class-name box, an opacity slider, the overlay with a legend of the classes present,
a table of their areas (% of the pixels) and the probability map of one chosen class.

Inference is tools/demo.py's: one cat_seg.Segmenter (the Python API; the evaluation's test
protocol), the same vocabulary checks, config and weight loading, and the same overlay
(``labelled_overlay``); only the image comes from memory. Requests share the Segmenter without a
lock (each call carries its own class names). The page is cat_seg.demo.web's; this script checks
the arguments and starts the server. Bad input (no or a duplicate class name, a file that is not an image, a model
still loading) gives a message on the page; an image larger than ``--max-side`` is downscaled
with a note.
"""
import argparse
import logging
import os

from cat_seg.config import CONFIG_FILE_FIX, check_config_paths
from cat_seg.demo.images import check_max_side, setup_cfg
from cat_seg.demo.web import DEFAULT_MAX_SIDE, model_builder, serve
from cat_seg.predictor import DEFAULT_MIN_SCORE, check_min_score
from cat_seg.utils.console import prepare_entry_point
from cat_seg.utils.download import check_cache_dir, source_url
from cat_seg.utils.paths import check_output_dir, require_file, resolve_repo_path

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
DEFAULT_CONFIG = "configs/synthetic/quickstart.yaml"
DEFAULT_WEIGHTS = "output/quickstart/model_final.pth"
QUICKSTART_COMMAND = "bash run_ahs.sh configs/synthetic/quickstart.yaml"
EXAMPLES_DIR = os.path.join("output", "web_demo", "examples")


def check_weights(config_file: str, weights: str) -> None:
    """Fail before starting the server when the weights are missing, naming the fix (a URL or
    hf:// name is downloaded while the model loads, the page saying so)."""
    if source_url(weights):
        check_cache_dir()  # where it will be downloaded
        return
    if not os.path.exists(weights) and \
            os.path.abspath(weights) == os.path.abspath(os.path.join(ROOT, DEFAULT_WEIGHTS)):
        raise FileNotFoundError(
            f"the quick-start model {DEFAULT_WEIGHTS} does not exist yet; make it with\n"
            f"    {QUICKSTART_COMMAND}\n(a few minutes on CPU), or pass --config-file CFG "
            "--weights OUTPUT_DIR/model_final.pth of another training run")
    require_file(weights, "weights file", "pass the model_final.pth a training run wrote (for "
                 f"{config_file})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--config-file", default=os.path.join(ROOT, DEFAULT_CONFIG),
                        help=f"the config the weights were trained with (default {DEFAULT_CONFIG})")
    parser.add_argument("--weights", default=os.path.join(ROOT, DEFAULT_WEIGHTS),
                        help=f"checkpoint, or its http(s) URL / hf://owner/name/file (default "
                             f"{DEFAULT_WEIGHTS}, made by {QUICKSTART_COMMAND})")
    parser.add_argument("--port", type=int, default=7860, help="HTTP port (default 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (0.0.0.0: reachable from other machines)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the config's MODEL.DEVICE)")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"larger uploads are downscaled to this longer side (default "
                        f"{DEFAULT_MAX_SIDE} pixels, as tools/demo.py; 0: no limit)")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help="sigmoid score a class needs to label a pixel (default "
                        f"{DEFAULT_MIN_SCORE}, as tools/demo.py); below it: none of these")
    parser.add_argument("--examples-dir", default=os.path.join(ROOT, EXAMPLES_DIR),
                        help="where the example scenes are drawn at start-up")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ..., last on the command line")
    args = parser.parse_args(argv)
    args.config_file = resolve_repo_path(args.config_file)
    args.weights = resolve_repo_path(args.weights)
    for check, value in ((check_min_score, args.min_score), (check_max_side, args.max_side)):
        try:
            check(value)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up probes
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a closed lab
    # Checked before the slow imports and the server, so a missing piece is reported at once.
    require_file(args.config_file, "config file", CONFIG_FILE_FIX)
    check_weights(args.config_file, args.weights)
    check_output_dir(args.examples_dir, "examples folder (--examples-dir)")
    # The files the config names (CLIP_WEIGHTS), without --weights: a URL is fetched later.
    check_config_paths(setup_cfg(args.config_file, args.opts, device=args.device), weights=False)
    serve(model_builder(args.config_file, args.weights, args.device, args.opts), args.examples_dir,
          host=args.host, port=args.port, max_side=args.max_side, min_score=args.min_score)


if __name__ == "__main__":
    # Console logging; glibc's own malloc settings, not the trainer's keep-freed-memory ones
    # (cat_seg.utils.allocator): measured on the demo, those raise the peak (12-megapixel photo,
    # 150 names: 2.11 GB against 1.83 GB; 10,000 names: 9.3 GB against 6.2 GB), and a demo does
    # not repeat a training step's allocations.
    prepare_entry_point(allocator=False)
    try:
        main()
    except (OSError, ValueError) as error:
        raise SystemExit(f"[web_demo] {error}")
