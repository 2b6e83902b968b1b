"""Training machinery: optimizer, mixed-precision step, hooks, atomic checkpoints.

The trainer and the command-line runs built on it live in :mod:`cat_seg.engine.trainer` and
:mod:`cat_seg.engine.launch` (train_net.py, tools/eval_benchmarks.py). They are not imported here:
they need the whole package (config, data, model), while the config checks import this package's
allowed values, so importing them here would make ``cat_seg.config`` import itself.
"""
from .checkpointer import AtomicCheckpointer
from .hooks import ModelIterationHook, unwrap_model
from .optimizer import build_optimizer, build_param_groups
from .train_loop import MixedPrecisionTrainer
