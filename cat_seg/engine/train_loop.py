"""A device-agnostic training step with optional mixed precision.

detectron2's ``AMPTrainer`` insists on CUDA; this one follows the model's device:

- ``float16`` (GPU): autocast + ``torch.amp.GradScaler`` (fp16 needs loss scaling);
- ``bfloat16`` (CPU or GPU): autocast only (bf16 has fp32's exponent range, no scaling needed).

Each step also checks that the losses are finite, so a divergence stops the run at the step
that produced it instead of silently writing NaN weights into every later checkpoint.
"""
import time

import torch
from detectron2.engine import SimpleTrainer

from ..utils.device import module_device

# SOLVER.AMP.PRECISION -> autocast dtype.
AMP_PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class MixedPrecisionTrainer(SimpleTrainer):
    """``SimpleTrainer`` with autocast in ``precision`` on whatever device the model lives."""

    def __init__(self, model, data_loader, optimizer, precision: str = "bfloat16"):
        super().__init__(model, data_loader, optimizer)
        if precision not in AMP_PRECISIONS:
            raise ValueError(f"SOLVER.AMP.PRECISION={precision!r}; "
                             f"use one of {sorted(AMP_PRECISIONS)}")
        self.precision = AMP_PRECISIONS[precision]
        self.device_type = module_device(model).type
        if self.precision == torch.float16 and self.device_type == "cpu":
            raise ValueError("float16 autocast is not supported on CPU; set "
                             "SOLVER.AMP.PRECISION bfloat16 (or disable SOLVER.AMP.ENABLED)")
        use_scaler = self.precision == torch.float16
        self.grad_scaler = torch.amp.GradScaler(self.device_type, enabled=use_scaler)

    def run_step(self):
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(device_type=self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self):
        ret = super().state_dict()
        ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
