"""Training hooks of AHS-Seg."""
from detectron2.engine import HookBase
from torch.nn.parallel import DistributedDataParallel


def unwrap_model(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


class ModelIterationHook(HookBase):
    """Tell the model the trainer's iteration before each step.

    Schedules inside the model (SDR's weight ``w(t)``) then follow ``trainer.iter``, which
    detectron2 restores from the checkpoint on ``--resume``; the model keeps no counter of its
    own that could drift from the trainer's.
    """

    def before_step(self):
        model = unwrap_model(self.trainer.model)
        if hasattr(model, "set_iteration"):
            model.set_iteration(self.trainer.iter)
