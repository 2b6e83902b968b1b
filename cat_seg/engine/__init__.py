"""Training machinery: optimizer, mixed-precision step, hooks, atomic checkpoints."""
from .checkpointer import AtomicCheckpointer
from .hooks import ModelIterationHook, unwrap_model
from .optimizer import build_optimizer, build_param_groups
from .train_loop import MixedPrecisionTrainer
