"""Training / evaluation runs from a command line: config set-up, checks before any process
starts, and detectron2's ``launch`` (one process per GPU, several machines).

``train_net.py`` and the ``ahs-train`` command (pyproject.toml) are this module's :func:`cli`:

    python train_net.py --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from last_checkpoint

Multi-node: ``--num-machines N --machine-rank R --dist-url tcp://HOST:PORT`` on every node.
"""
import copy
import json
import logging
import os
from contextlib import contextmanager

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import build_config, build_config_or_explain
from ..utils.allocator import reuse_freed_memory
from ..utils.paths import check_output_dir
from .checkpointer import AtomicCheckpointer
from .trainer import Trainer

__all__ = ["EVAL_CONFIG_NAME", "check_before_launch", "cli", "default_argument_parser",
           "launch_from_args", "setup", "train_or_evaluate", "training_config_kept",
           "weights_record"]

EVAL_CONFIG_NAME = "config_eval.yaml"


@contextmanager
def training_config_kept(output_dir: str, enabled: bool):
    """Inside, ``OUTPUT_DIR/config.yaml`` may be rewritten; after, it is as before and the new
    dump is ``OUTPUT_DIR/config_eval.yaml``.

    ``default_setup`` always saves the config as ``OUTPUT_DIR/config.yaml``. An evaluation
    usually writes into its training run's folder (run_ahs.sh does), and its config carries the
    test protocol (sliding window, pooling [1, 1]); left there, it would replace the training
    config that ``--resume`` and tools/demo.py read. Only the main process writes files.
    """
    if not (enabled and output_dir and comm.is_main_process()):
        yield
        return
    path = os.path.join(output_dir, "config.yaml")
    previous = None
    if os.path.isfile(path):
        with open(path) as f:
            previous = f.read()
    try:
        yield
    finally:
        if os.path.isfile(path):
            os.replace(path, os.path.join(output_dir, EVAL_CONFIG_NAME))
        if previous is not None:
            temporary = f"{path}.tmp.{os.getpid()}"
            with open(temporary, "w") as f:
                f.write(previous)
            os.replace(temporary, path)
        # default_setup has configured detectron2's logger by now (not yet ours).
        logging.getLogger("detectron2").info(
            "evaluation config saved as %s; %s", os.path.join(output_dir, EVAL_CONFIG_NAME),
            "the training run's config.yaml is kept" if previous is not None
            else "no training config.yaml in this folder")


def setup(args):
    """The frozen config of ``args`` (``config_file``, ``opts``, ``eval_only``), detectron2's
    ``default_setup`` (output folder, logs, config dump, seed) and the ``cat_seg`` logger; glibc
    keeps freed memory for reuse (:mod:`cat_seg.utils.allocator`)."""
    reuse_freed_memory()
    cfg = build_config(args.config_file, args.opts)
    with training_config_kept(cfg.OUTPUT_DIR, enabled=args.eval_only):
        default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="cat_seg")
    return cfg


def train_or_evaluate(args):
    """One process's run (what ``launch`` starts): ``--eval-only`` evaluates MODEL.WEIGHTS (or
    the last checkpoint with ``--resume``) and writes OUTPUT_DIR/eval_results.json; otherwise
    trains (``--resume`` continues from OUTPUT_DIR/last_checkpoint)."""
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR,
                                          allow_unexpected=cfg.MODEL.ALLOW_UNEXPECTED_WEIGHTS)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            saved = copy.deepcopy(results)
            if checkpointer.ignored_keys:
                saved["weights"] = weights_record(cfg.MODEL.WEIGHTS, checkpointer)
            with open(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), "w") as f:
                json.dump(saved, f, indent=2)
            verify_results(cfg, results)
        return results

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def weights_record(path: str, checkpointer: AtomicCheckpointer) -> dict:
    """What an evaluation states about its weights in its results file."""
    return {"file": path, "allow_unexpected_weights": checkpointer.allow_unexpected,
            "ignored_keys": len(checkpointer.ignored_keys),
            "ignored_modules": sorted({".".join(k.split(".")[:2]) for k in checkpointer.ignored_keys})}


def check_before_launch(args) -> None:
    """What can be checked before any process starts or any model is built: the config, the
    output folder, and the weights an evaluation needs. Raises with a one-line message."""
    cfg = build_config_or_explain(args.config_file, args.opts)
    if args.machine_rank == 0:
        check_output_dir(cfg.OUTPUT_DIR, "output folder (OUTPUT_DIR)")
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    resuming = args.resume and os.path.isfile(last)
    if args.eval_only and not cfg.MODEL.WEIGHTS and not resuming:
        raise ValueError("--eval-only without weights would evaluate an untrained model: pass "
                         "MODEL.WEIGHTS OUTPUT_DIR/model_final.pth (or --resume with a run's "
                         "OUTPUT_DIR)")
    if cfg.MODEL.WEIGHTS and not resuming and "://" not in cfg.MODEL.WEIGHTS \
            and not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS} does not exist; pass the "
                                "path of a checkpoint train_net.py wrote "
                                "(OUTPUT_DIR/model_final.pth), or leave it empty to start from "
                                "the CLIP weights")


def launch_from_args(args, name: str = "train_net"):
    """Print the arguments, :func:`check_before_launch` (a failure exits with one line
    ``[name] message``), then :func:`train_or_evaluate` in ``args.num_gpus`` processes per
    machine through detectron2's ``launch``."""
    print("Command Line Args:", args)
    try:
        check_before_launch(args)
    except (OSError, ValueError, KeyError, AssertionError) as error:
        raise SystemExit(f"[{name}] {error}")
    launch(train_or_evaluate, args.num_gpus, num_machines=args.num_machines,
           machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


def cli(argv=None, name: str = "ahs-train"):
    """The training command line: detectron2's default arguments, then :func:`launch_from_args`."""
    launch_from_args(default_argument_parser().parse_args(argv), name=name)
