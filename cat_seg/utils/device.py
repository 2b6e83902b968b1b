"""Which device a module lives on."""
import torch
from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (every model here keeps all its parameters on
    one device). Raises ``StopIteration`` for a module without parameters."""
    return next(module.parameters()).device
