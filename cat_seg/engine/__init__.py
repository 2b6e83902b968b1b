"""Training machinery: optimizer, mixed-precision step, hooks, atomic checkpoints, the trainer
and the command-line runs built on it (train_net.py, tools/eval_benchmarks.py)."""
from .checkpointer import AtomicCheckpointer
from .hooks import ModelIterationHook, unwrap_model
from .launch import setup, train_or_evaluate, weights_record
from .optimizer import build_optimizer, build_param_groups
from .train_loop import MixedPrecisionTrainer
from .trainer import Trainer, wrap_ddp
