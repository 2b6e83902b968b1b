#!/usr/bin/env python
"""One markdown table of an ablation study: mIoU per benchmark, their mean, and the cost of each
variant relative to the first (the baseline).

    python tools/ablation_table.py --root output/ablations \\
        --names baseline hpa_only sdr_only afr_only full \\
        --configs configs/ablations/vitb_384_ahs_{baseline,hpa_only,sdr_only,afr_only,full}.yaml \\
        --output output/ablations/ablations.md [--opts KEY VALUE ...]

(run_ahs_ablations.sh calls it so after training and evaluating every variant.)

With ``--seeds 0 1 2`` the runs are ROOT/<name>/seed<k> (run_ahs_ablations.sh with SEEDS="0 1 2",
as the synthetic ablation does) and the table reports every benchmark and the harmonic mean of
the benchmarks as mean ± std over the seeds, with the training time per iteration (from each
run's log.txt) relative to the first row, instead of the measured inference costs.

mIoU comes from ROOT/<name>/results.json as tools/eval_benchmarks.py writes it
(``{benchmark: {"sem_seg": {"mIoU": ...}}}``). The cost columns are measured here, in one process,
by tools/analyze_model.py's measuring (cat_seg.analysis) with random CLIP weights (cost depends only on the architecture):
parameters added to the baseline's, and the ratio of the median inference time of one
test-time forward (CLIP resolution, ``--num-classes`` classes, text embeddings cached) to the
baseline's, the variants' runs interleaved so that machine load affects all alike.
"""
import argparse

from cat_seg.analysis.ablations import write_report, write_seeded_report
from cat_seg.utils.console import prepare_entry_point


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.seeds:
        return write_seeded_report(args.root, args.names, args.seeds, args.output)
    return write_report(args.root, args.names, args.configs, args.output, args.opts,
                        args.num_classes, args.warmup, args.iters)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--root", required=True, help="folder holding <name>/results.json")
    parser.add_argument("--names", nargs="+", required=True, help="ablation names; first = baseline")
    parser.add_argument("--configs", nargs="+", required=True, help="their configs, same order")
    parser.add_argument("--output", required=True, help="markdown file to write")
    parser.add_argument("--num-classes", type=int, default=171, help="vocabulary size timed")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per model")
    parser.add_argument("--iters", type=int, default=10, help="timed forwards per model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[],
                        help="runs are ROOT/<name>/seed<k>: report mean ± std over these seeds "
                             "and the training-time ratio instead of the measured costs")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ... applied to every config (last)")
    args = parser.parse_args(argv)
    if len(args.names) != len(args.configs):
        parser.error(f"{len(args.names)} --names but {len(args.configs)} --configs; give one "
                     "config per name, in the same order")
    if len(set(args.names)) != len(args.names):
        parser.error(f"--names must be distinct, got {args.names}")
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


if __name__ == "__main__":
    prepare_entry_point(allocator=False)
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"[ablations] {error}")
