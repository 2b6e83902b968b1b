"""``ahs-seg eval``: one model on several benchmarks with the test protocol, and a results table.

    ahs-seg eval --config-file CFG --weights W --output OUT \\
        [--benchmarks A-847,PC-459,...] [--skip-missing] [--vis N] [--num-gpus N] [KEY VALUE ...]

Writes OUT/results.json (every metric of every benchmark), OUT/results.md (mIoU per benchmark
plus their mean, the chance level and, with TEST.FROZEN_CLIP_REFERENCE, the frozen CLIP's
zero-shot mIoU), OUT/sem_seg_per_class_<dataset>.csv and, with --vis N, N pictures per benchmark
under OUT/vis/ (image | ground truth | prediction, with a class legend).
``--weights`` may also be an http(s) URL or ``hf://[spaces/]owner/name/file``: downloaded once
into the cache and, for an official CAT-Seg checkpoint, converted there first
(:func:`cat_seg.engine.catseg_checkpoint.fetch_ahs_weights`).
The benchmarks default to the config's TEST.BENCHMARKS. All of them are checked before the model
runs: a missing one is reported with its reason and the run stops unless --skip-missing.
``eval_ahs.sh`` and ``python tools/eval_benchmarks.py`` run this command; the work is
cat_seg.engine.benchmarks'.
"""
import argparse

from ..utils.download import source_url
from ..utils.paths import resolve_repo_path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True,
                        help="checkpoint (.pth) to evaluate, or its URL / hf:// name")
    parser.add_argument("--output", required=True)
    parser.add_argument("--benchmarks", default="", help="comma-separated short names")
    parser.add_argument("--skip-missing", action="store_true")
    parser.add_argument("--vis", type=int, default=0, help="pictures per benchmark")
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    # A shipped config (configs/...) is found from any folder; the weights are the user's file.
    args.config_file = resolve_repo_path(args.config_file)
    return args


def main(argv=None):
    from ..engine import benchmarks
    from ..engine.catseg_checkpoint import fetch_ahs_weights

    args = parse_args(argv)
    try:
        if source_url(args.weights):  # before any process starts: one download, one conversion
            args.weights = fetch_ahs_weights(args.weights)
    except (OSError, ValueError) as error:  # the cache, the download: one line
        raise SystemExit(f"[eval] {error}") from None
    return benchmarks.launch_evaluation(args)
