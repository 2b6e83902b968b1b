"""Training / evaluation runs from a command line: config set-up, checks before any process
starts, and detectron2's ``launch`` (one process per GPU, several machines).

``train_net.py`` and the ``ahs-train`` command (pyproject.toml) are this module's :func:`cli`:

    python train_net.py --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from last_checkpoint
    python train_net.py --config-file CFG --resume --allow-config-change SOLVER.MAX_ITER 90000

``--resume`` refuses settings that change what is trained unless ``--allow-config-change``
(:mod:`cat_seg.engine.resume_guard`); a finished run says so and exits 0. The run holds
OUTPUT_DIR/.lock (:func:`cat_seg.utils.results_folder.folder_lock`): a second run into the same
folder stops. Ctrl-C and errors whose message says what to do end with one line, no traceback.

Multi-node: ``--num-machines N --machine-rank R --dist-url tcp://HOST:PORT`` on every node.
"""
import copy
import json
import logging
import os
from contextlib import contextmanager

from detectron2.engine import default_argument_parser as detectron2_argument_parser
from detectron2.engine import default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import build_config, build_config_or_explain, check_config_paths
from ..data.folder_dataset import check_folder_dataset_paths, register_config_folder_datasets
from ..data.paths import check_dataset_root
from ..utils.console import console_for_run, prepare_entry_point
from ..utils.paths import check_output_dir, resolve_repo_path
from ..utils.results_folder import (FolderInUseError, RunRecord, file_fingerprint, folder_lock,
                                    retire_previous_run, write_atomic)
from .checkpointer import AtomicCheckpointer, CheckpointMismatchError, CheckpointReadError
from .resume_guard import check_resume, record_config_change, training_config_preserved
from .trainer import (DatasetInputError, Trainer, TrainingInterrupted, interrupted_message,
                      one_line)

__all__ = ["EVAL_CONFIG_NAME", "check_before_launch", "cli", "default_argument_parser",
           "launch_from_args", "setup", "train_or_evaluate", "training_config_kept",
           "weights_record"]

EVAL_CONFIG_NAME = "config_eval.yaml"

# Errors raised inside a run whose message names the problem and the fix: reported in one line.
# (Ctrl-C is reported by launch_from_args itself.)
STATED_ERRORS = (CheckpointMismatchError, CheckpointReadError, DatasetInputError,
                 FileNotFoundError, NotADirectoryError, IsADirectoryError)


def default_argument_parser(epilog=None):
    """detectron2's training arguments plus ``--allow-config-change`` (``--resume`` with settings
    that differ from the run's config.yaml; recorded in config_history.yaml)."""
    parser = detectron2_argument_parser(epilog)
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: continue although training settings differ from the "
                             "run's OUTPUT_DIR/config.yaml (the change is appended to "
                             "OUTPUT_DIR/config_history.yaml)")
    return parser

logger = logging.getLogger(__name__)


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
    ``default_setup`` (output folder, logs, config dump, seed) and the ``cat_seg`` logger
    (OUTPUT_DIR/log.txt; on the terminal, an entry point's console streams where there is one:
    :func:`cat_seg.utils.console.console_for_run`). Process-wide settings (glibc's allocator) are
    the entry point's (:func:`cat_seg.utils.console.prepare_entry_point`), which passes them on
    to the workers."""
    cfg = build_config(args.config_file, args.opts)
    # Datasets described by files (DATASETS.FOLDER_DATASETS) exist only once registered; their
    # paths are saved absolute in OUTPUT_DIR/config.yaml, so an evaluation finds them anywhere.
    cfg = register_config_folder_datasets(cfg)
    with training_config_kept(cfg.OUTPUT_DIR, enabled=args.eval_only), \
            training_config_preserved(cfg.OUTPUT_DIR, enabled=args.resume and not args.eval_only):
        default_setup(cfg, args)
    console = console_for_run(comm.get_rank())
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="cat_seg",
                 configure_stdout=not console, enable_propagation=console)
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
            # Which weights (size, SHA-256), config and dates these figures are of.
            loaded = checkpointer.loaded_path
            saved["run"] = RunRecord(
                weights=file_fingerprint(loaded) if os.path.isfile(loaded) else {"file": loaded},
                config_file=os.path.abspath(args.config_file), opts=list(args.opts),
                config_dump=EVAL_CONFIG_NAME, planned=list(results)).stamp(list(results))
            write_atomic(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"),
                         json.dumps(saved, indent=2) + "\n")
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


def check_before_launch(args):
    """What can be checked before any process starts or any model is built: the config, the
    output folder, and the weights an evaluation needs. Raises with a one-line message; returns
    the config."""
    cfg = build_config_or_explain(args.config_file, args.opts)
    register_config_folder_datasets(cfg)  # a bad dataset description stops here, in one line
    if args.machine_rank == 0:
        check_output_dir(cfg.OUTPUT_DIR, "output folder (OUTPUT_DIR)")
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    resuming = args.resume and os.path.isfile(last)
    if args.eval_only and not cfg.MODEL.WEIGHTS and not resuming:
        raise ValueError("--eval-only without weights would evaluate an untrained model: pass "
                         "MODEL.WEIGHTS OUTPUT_DIR/model_final.pth (or --resume with a run's "
                         "OUTPUT_DIR)")
    # MODEL.WEIGHTS, CLIP_WEIGHTS, $DETECTRON2_DATASETS and the folders of the described
    # datasets this run reads: absent, or a file where a folder belongs (and vice versa).
    check_config_paths(cfg, weights=not resuming)
    check_dataset_root()
    check_folder_dataset_paths(list(cfg.DATASETS.TEST) + ([] if args.eval_only
                                                           else list(cfg.DATASETS.TRAIN)))
    return cfg


def check_resume_request(args, cfg, name: str = "train_net"):
    """``--resume`` (training): the run's saved config against ``cfg``
    (:func:`cat_seg.engine.resume_guard.check_resume`: raises listing every changed training
    setting unless ``--allow-config-change``, whose change is then appended to
    config_history.yaml). Returns the :class:`FinishedRun` when nothing is left to train."""
    if not args.resume or args.eval_only:
        return None
    finished, differences = check_resume(cfg, getattr(args, "allow_config_change", False))
    if differences and args.machine_rank == 0:
        path = record_config_change(cfg.OUTPUT_DIR, differences)
        logger.warning(f"[{name}] --allow-config-change: resuming with {len(differences)} changed "
                       f"setting(s) ({', '.join(k for k, _, _ in differences)}); recorded in "
                       f"{path}, config.yaml keeps the original")
    return finished


def launch_from_args(args, name: str = "train_net"):
    """Log the arguments, :func:`check_before_launch` (a failure exits with one line
    ``[name] message``), then :func:`train_or_evaluate` in ``args.num_gpus`` processes per
    machine through detectron2's ``launch``. A shipped config (``configs/...``) is found from
    any folder (:func:`cat_seg.utils.paths.resolve_repo_path`)."""
    args.config_file = resolve_repo_path(args.config_file)
    logger.info("Command Line Args: %s", args)
    try:
        cfg = check_before_launch(args)
        finished = check_resume_request(args, cfg, name)
    except (OSError, ValueError, KeyError, AssertionError) as error:
        raise SystemExit(f"[{name}] {error}")
    if finished is not None:
        logger.info(f"[{name}] {finished.message()}")
        return None
    try:
        # Machine 0's processes own the folder; the lock dies with this process.
        with folder_lock(cfg.OUTPUT_DIR, "evaluation" if args.eval_only else "training") \
                if args.machine_rank == 0 else _nothing():
            if args.machine_rank == 0:
                _retire_unless_resumed(args, cfg.OUTPUT_DIR, name)
            return launch(train_or_evaluate, args.num_gpus, num_machines=args.num_machines,
                          machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    # The last line of a stopped run (exit status 130): an error, shown as it is, like the one-line
    # messages of SystemExit.
    except TrainingInterrupted as interrupted:
        logger.error(f"[{name}] {interrupted}")
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # before the trainer ran, or in another process
        logger.error(f"[{name}] {interrupted_message(cfg.OUTPUT_DIR)}")
        raise SystemExit(130) from None
    except FolderInUseError as error:
        raise SystemExit(f"[{name}] {error}") from None
    except STATED_ERRORS as error:
        # The traceback goes to OUTPUT_DIR/log.txt (its file handler logs DEBUG), not the screen.
        logging.getLogger("cat_seg").debug("stopped by", exc_info=True)
        raise SystemExit(f"[{name}] {one_line(error)}") from None


@contextmanager
def _nothing():
    yield


def _retire_unless_resumed(args, output_dir: str, name: str) -> None:
    """A training from scratch into a folder holding an earlier run moves that run's files to
    OUTPUT_DIR/previous/<time>/ first: its checkpoints never sit beside the new config."""
    resuming = args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
    if args.eval_only or resuming:
        return
    moved = retire_previous_run(output_dir)
    if moved:
        logger.warning(f"[{name}] {output_dir} held an earlier run; its files were moved to "
                       f"{moved} (--resume continues a run instead of starting over)")


def cli(argv=None, name: str = "ahs-train"):
    """The training command line (``ahs-train``, ``ahs-seg train``): the entry point's process
    settings, detectron2's default arguments, then :func:`launch_from_args`."""
    prepare_entry_point()
    launch_from_args(default_argument_parser().parse_args(argv), name=name)
