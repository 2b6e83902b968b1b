#!/usr/bin/env python
"""Soak test of crash-resume: a training killed (SIGKILL) at random points and resumed with
``--resume`` each time must end with the same weights as an uninterrupted run.

    nice -n 19 env OMP_NUM_THREADS=1 python tools/soak_resume.py --iters 2000 --kills 3 \\
        --output output/soak [KEY VALUE ...]

Runs ``train_net.py`` (``--config-file``, default the quick start) twice from the same SEED with
``TEST.EVAL_PERIOD 0`` and checkpoints every ``--checkpoint-period`` iterations:

1. ``OUTPUT/uninterrupted``: straight to the end;
2. ``OUTPUT/killed``: killed with SIGKILL once its log shows iteration ``k_j`` (``--kills``
   points drawn uniformly, with ``--seed``, plus a random delay of up to ``--jitter`` seconds so
   kills also land mid-step and mid-checkpoint-write), then restarted with ``--resume``, until
   it finishes.

After every kill each ``*.pth`` of the killed run's folder must load (``torch.load``,
weights only), and ``last_checkpoint`` must name a checkpoint with finite weights. At the end the
two ``model_final.pth`` are compared tensor by tensor; the report (also written to
``OUTPUT/soak_report.json``) gives the largest absolute difference and passes when it is at most
``--tolerance``. Exit status 0 when every check passed, 1 otherwise.
Trailing ``KEY VALUE`` pairs are config overrides for both runs (e.g. a smaller model in tests).
The procedure is cat_seg.engine.soak's; this script parses the arguments and prints the report.
"""
import argparse
import json
import os
import sys

from cat_seg.engine.soak import soak
from cat_seg.utils.console import prepare_entry_point

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("--config-file", default="configs/synthetic/quickstart.yaml")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--checkpoint-period", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="training SEED and kill points")
    parser.add_argument("--kill-at", type=int, nargs="+", default=None, metavar="ITER",
                        help="kill after these iterations instead of --kills random ones")
    parser.add_argument("--jitter", type=float, default=2.0,
                        help="random extra seconds before each kill")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="largest absolute weight difference accepted")
    parser.add_argument("--output", default="output/soak")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.iters < 4 or args.kills < 1 or args.checkpoint_period < 1:
        parser.error("need --iters >= 4, --kills >= 1 and --checkpoint-period >= 1")
    return args


def main(argv=None) -> int:
    report = soak(parse_args(argv), ROOT)
    print(json.dumps({k: report[k] for k in ("kill_targets", "final", "problems", "passed",
                                             "wall_s") if k in report}, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    prepare_entry_point()
    sys.exit(main())
