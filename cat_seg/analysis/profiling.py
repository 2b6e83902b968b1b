"""Where the time goes: torch.profiler tables of one test-time forward and one training step.

``tools/analyze_model.py --profile ROWS`` prints them (and ``--markdown`` writes them), so a
change meant to be faster can show which operators it moved. Ops are sorted by their own
(self) time on the device that runs the model: a CPU model by self CPU time, a GPU model by
self CUDA time.
"""
from typing import Any, Dict, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from ..engine.train_loop import AMP_PRECISIONS
from ..utils.device import module_device
from .measure import test_input, training_batch


def _profiled(fn, device: torch.device, rows: int) -> Dict[str, Any]:
    """Run ``fn`` once under the profiler -> {"table": top ``rows`` ops, "top": [(op, self ms)]}."""
    activities = [ProfilerActivity.CPU]
    sort_by = "self_cpu_time_total"
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        sort_by = "self_cuda_time_total"
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ranked = sorted(averages, key=lambda e: getattr(e, attribute, 0.0), reverse=True)[:rows]
    return {"sort_by": sort_by,
            "table": averages.table(sort_by=sort_by, row_limit=rows),
            "top": [(e.key, round(getattr(e, attribute, 0.0) / 1e3, 3), e.count) for e in ranked]}


def profile_inference(model: nn.Module, class_names: Sequence[str], image_size: int,
                      rows: int = 15, warmup: int = 1) -> Dict[str, Any]:
    """One test-time forward of a random ``image_size`` image with the model's test path
    (whole image or sliding window) and ``class_names``, after ``warmup`` untimed ones."""
    device = module_device(model)
    model.eval()
    model.set_vocabulary(list(class_names))
    inputs = [test_input(image_size, device)]

    def forward() -> None:
        with torch.no_grad():
            model(inputs)

    for _ in range(warmup):
        forward()  # also fills the text cache: the profile is of the image path
    return _profiled(forward, device, rows)


def profile_training_step(model: nn.Module, cfg, rows: int = 15, batch_size: int = 1,
                          warmup: int = 1) -> Dict[str, Any]:
    """Forward + backward of one training step on a synthetic batch (as
    :func:`~cat_seg.analysis.measure.measure_training_step` builds it), after ``warmup`` steps.
    The optimizer update is left out: its cost is a few element-wise ops per parameter."""
    device = module_device(model)
    model.train()
    model.set_iteration(0)
    batch = training_batch(cfg, len(model.vocabulary([])), batch_size, device)
    amp = cfg.SOLVER.AMP.ENABLED
    dtype = AMP_PRECISIONS[cfg.SOLVER.AMP.PRECISION]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = sum(model(batch).values())
        loss.backward()

    for _ in range(warmup):
        step()
    return _profiled(step, device, rows)


def format_profile(label: str, result: Dict[str, Dict[str, Any]]) -> str:
    """Markdown: per phase, the profiler's table in a code block."""
    parts = [f"### Profile: {label}"]
    for phase, profiled in result.items():
        parts.append(f"\n{phase} (sorted by {profiled['sort_by']}):\n\n```\n"
                     f"{profiled['table'].rstrip()}\n```")
    return "\n".join(parts) + "\n"
