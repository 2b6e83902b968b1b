#!/usr/bin/env python
"""AHS-Seg training and evaluation entry point.

    python train_net.py --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from last_checkpoint

Multi-node: ``--num-machines N --machine-rank R --dist-url tcp://HOST:PORT`` on every node.
"""
import copy
import json
import logging
import os
import weakref
from contextlib import contextmanager

import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import (DefaultTrainer, SimpleTrainer, default_argument_parser,
                               default_setup, hooks, launch)
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from cat_seg import build_config
from cat_seg.config import build_config_or_explain
from cat_seg.data import SemanticDatasetMapper
from cat_seg.data.resumable_stream import ResumableTrainingStream
from cat_seg.engine import AtomicCheckpointer, MixedPrecisionTrainer, ModelIterationHook, build_optimizer
from cat_seg.evaluation import build_sem_seg_evaluator
from cat_seg.utils.paths import check_output_dir


class Trainer(DefaultTrainer):
    """DefaultTrainer with AHS-Seg's optimizer, data, evaluator, device-agnostic DDP and AMP."""

    def __init__(self, cfg):
        # Same steps as DefaultTrainer.__init__, except: DDP without device_ids on CPU (gloo),
        # our device-agnostic AMP trainer, and atomic checkpoints.
        super(DefaultTrainer, self).__init__()
        logger = logging.getLogger("detectron2")
        if not logger.isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_ddp(model)
        if cfg.SOLVER.AMP.ENABLED:
            self._trainer = MixedPrecisionTrainer(model, data_loader, optimizer,
                                                  precision=cfg.SOLVER.AMP.PRECISION)
        else:
            self._trainer = SimpleTrainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # The data stream's seed is saved with the weights: --resume continues the same stream.
        self.train_stream = getattr(data_loader, "dataset", None)
        streams = ({"train_stream": self.train_stream}
                   if isinstance(self.train_stream, ResumableTrainingStream) else {})
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
                                               **streams)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        # The model learns the trainer's iteration before every step (SDR's schedule); on
        # resume the iteration comes back from the checkpoint, so the schedule does too.
        return [ModelIterationHook()] + super().build_hooks()

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    def resume_or_load(self, resume=True):
        """``--resume``: the last checkpoint of OUTPUT_DIR, strictly (weights it has that the
        model lacks mean the config changed: an error unless MODEL.ALLOW_UNEXPECTED_WEIGHTS).
        Otherwise MODEL.WEIGHTS, for fine-tuning: weights of another model's modules that this
        one lacks are dropped with a warning naming them, as detectron2 does. The data stream
        then continues at the resumed iteration."""
        resuming = resume and self.checkpointer.has_checkpoint()
        self.checkpointer.allow_unexpected = (self.cfg.MODEL.ALLOW_UNEXPECTED_WEIGHTS
                                              or not resuming)
        if not resuming and self.cfg.MODEL.WEIGHTS:
            logging.getLogger("cat_seg").info(
                "fine-tuning from MODEL.WEIGHTS %s (not a resume): weights of modules this model "
                "does not have are dropped with a warning", self.cfg.MODEL.WEIGHTS)
        super().resume_or_load(resume=resume)
        if isinstance(self.train_stream, ResumableTrainingStream):
            self.train_stream.start_iter = self.start_iter

    @classmethod
    def build_train_loader(cls, cfg):
        """Batches as a pure function of (seed, iteration), so --resume continues the very
        stream of the killed run (cat_seg.data.resumable_stream). The seed is SEED, or a random
        one drawn here when SEED < 0 (saved in the checkpoints)."""
        records = DatasetCatalog.get(cfg.DATASETS.TRAIN[0]) if len(cfg.DATASETS.TRAIN) == 1 else \
            [r for name in cfg.DATASETS.TRAIN for r in DatasetCatalog.get(name)]
        # Every process must draw the same stream (each takes its own slice of it).
        seed = cfg.SEED if cfg.SEED >= 0 else int(comm.shared_random_seed())
        world = comm.get_world_size()
        if cfg.SOLVER.IMS_PER_BATCH % world:
            raise ValueError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible "
                             f"by the {world} processes; make it a multiple")
        stream = ResumableTrainingStream(records, SemanticDatasetMapper(cfg, is_train=True), seed,
                                         cfg.SOLVER.IMS_PER_BATCH // world, comm.get_rank(), world)
        return build_detection_train_loader(dataset=stream, mapper=None,
                                            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                            aspect_ratio_grouping=False,
                                            num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # Every record names its dataset, so the model reads that dataset's vocabulary.
        records = [dict(d, dataset_name=dataset_name) for d in DatasetCatalog.get(dataset_name)]
        return build_detection_test_loader(records, mapper=SemanticDatasetMapper(cfg, is_train=False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_sem_seg_evaluator(dataset_name, output_dir=output_folder)


def wrap_ddp(model):
    """DistributedDataParallel when there are several processes; CPU models get no device_ids."""
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    device_ids = [device.index if device.index is not None else comm.get_local_rank()] \
        if device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False,
                                  find_unused_parameters=False)
    # DDP copies rank 0's parameters to every rank, but with broadcast_buffers=False no buffer:
    # HPA's prototypes (a buffer, initialised from each rank's own text embeddings) must start
    # equal too; its all-reduced updates keep them equal afterwards.
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)
    return ddp


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
    cfg = build_config(args.config_file, args.opts)
    with training_config_kept(cfg.OUTPUT_DIR, enabled=args.eval_only):
        default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="cat_seg")
    return cfg


def main(args):
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


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    try:
        check_before_launch(args)
    except (OSError, ValueError, KeyError, AssertionError) as error:
        raise SystemExit(f"[train_net] {error}")
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
