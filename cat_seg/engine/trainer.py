"""The AHS-Seg trainer: detectron2's ``DefaultTrainer`` with this project's parts.

``Trainer`` builds the optimizer (:func:`cat_seg.engine.build_optimizer`), the resumable training
stream and :class:`cat_seg.data.SemanticDatasetMapper`, the sem-seg evaluator, device-agnostic
DDP (:func:`wrap_ddp`), the AMP step (:class:`cat_seg.engine.MixedPrecisionTrainer`) and atomic
checkpoints, and registers :class:`cat_seg.engine.ModelIterationHook` first.
``train_net.py`` (or ``ahs-train``) runs it through :mod:`cat_seg.engine.launch`.
"""
import contextlib
import logging
import os
import signal
import threading
import weakref

import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, SimpleTrainer
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..data import SemanticDatasetMapper
from ..data.resumable_stream import ResumableTrainingStream
from ..evaluation import build_sem_seg_evaluator
from ..utils.device import module_device
from .checkpointer import AtomicCheckpointer
from .hooks import ModelIterationHook
from .optimizer import build_optimizer
from .train_loop import MixedPrecisionTrainer

__all__ = ["DatasetInputError", "Trainer", "TrainingInterrupted", "interrupted_message",
           "one_line", "wrap_ddp"]


class DatasetInputError(ValueError):
    """A dataset file the run cannot use (a label id outside the class list, an unreadable
    image...); the message, from the code that read it, names the file and the fix."""


def one_line(error: BaseException) -> str:
    """The message of ``error``; for an error re-raised by a DataLoader worker, whose message
    carries the worker's traceback, only the original error's own message."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


class _NamedInputErrors:
    """A dataset mapper whose ValueError / OSError (bad file content) become
    :class:`DatasetInputError`, so the entry points report them in one line."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, record):
        try:
            return self.mapper(record)
        except (ValueError, OSError) as error:
            raise DatasetInputError(str(error)) from error


class _EvaluatorNamedInputErrors(DatasetEvaluator):
    """An evaluator whose ``process`` reports bad label files as :class:`DatasetInputError`;
    everything else (``evaluate``, ``metrics``, ``write_per_class_csv``...) is the evaluator's."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def __getattr__(self, name):
        return getattr(self.evaluator, name)

    def reset(self):
        self.evaluator.reset()

    def process(self, inputs, outputs):
        try:
            self.evaluator.process(inputs, outputs)
        except (ValueError, OSError) as error:
            raise DatasetInputError(str(error)) from error

    def evaluate(self):
        return self.evaluator.evaluate()


def interrupted_message(output_dir: str, iteration=None, max_iter=None,
                        stopped: str = "interrupted") -> str:
    """What to tell a user who stopped training (Ctrl-C; ``stopped`` says how otherwise, e.g.
    "stopped by SIGTERM"): where it stopped and what ``--resume`` continues from
    (OUTPUT_DIR/last_checkpoint)."""
    where = f" at iteration {iteration}" + (f" of {max_iter}" if max_iter else "") \
        if iteration is not None else ""
    tag = os.path.join(output_dir, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            last = f.read().strip()
        resume = (f"`--resume` (RESUME=1 for run_ahs.sh) continues from "
                  f"{os.path.join(output_dir, last)}")
    else:
        resume = ("no checkpoint was written yet (SOLVER.CHECKPOINT_PERIOD), so `--resume` starts "
                  "from the beginning")
    return f"training {stopped}{where}; {resume}"


class TrainingInterrupted(Exception):
    """Training stopped by Ctrl-C (KeyboardInterrupt) or SIGTERM; the message says how to
    continue."""


class Terminated(BaseException):
    """SIGTERM during training (a scheduler's preemption or time limit, ``kill``). A
    BaseException, as KeyboardInterrupt, so that no ``except Exception`` swallows it."""


@contextlib.contextmanager
def sigterm_stops_training():
    """While training, SIGTERM raises :class:`Terminated` in the main thread, so the run ends
    with the same one-line "interrupted; --resume continues from ..." as Ctrl-C instead of dying
    without a word. The previous handler comes back afterwards (nothing changes outside the
    training loop); elsewhere than the main thread signals cannot be handled: nothing is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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

    def train(self):
        """DefaultTrainer.train; Ctrl-C or SIGTERM raises :class:`TrainingInterrupted` naming
        the iteration and the checkpoint ``--resume`` continues from, instead of a traceback."""
        try:
            with sigterm_stops_training():
                return super().train()
        except (KeyboardInterrupt, Terminated) as stop:
            stopped = "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"
            raise TrainingInterrupted(interrupted_message(
                self.cfg.OUTPUT_DIR, self.iter, self.max_iter, stopped)) from None

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
        stream = ResumableTrainingStream(records,
                                         _NamedInputErrors(SemanticDatasetMapper(cfg, is_train=True)), seed,
                                         cfg.SOLVER.IMS_PER_BATCH // world, comm.get_rank(), world)
        return build_detection_train_loader(dataset=stream, mapper=None,
                                            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                            aspect_ratio_grouping=False,
                                            num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # Every record names its dataset, so the model reads that dataset's vocabulary.
        records = [dict(d, dataset_name=dataset_name) for d in DatasetCatalog.get(dataset_name)]
        # Workers decode and resize the next images while the model runs on the current one
        # (detectron2's default for a list of records is 0 workers: loading in the model's turn).
        mapper = _NamedInputErrors(SemanticDatasetMapper(cfg, is_train=False))
        return build_detection_test_loader(records, mapper=mapper,
                                           num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        # A label id outside the class list is reported in one line (DatasetInputError).
        return _EvaluatorNamedInputErrors(build_sem_seg_evaluator(dataset_name,
                                                                  output_dir=output_folder))


def wrap_ddp(model):
    """DistributedDataParallel when there are several processes; CPU models get no device_ids."""
    if comm.get_world_size() == 1:
        return model
    device = module_device(model)
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
