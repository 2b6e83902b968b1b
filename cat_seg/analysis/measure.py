"""How big and how fast is a model: parameters, FLOPs, latency, training step, peak memory.

The measuring half of tools/analyze_model.py (whose docstring describes every figure; the
reporting half is :mod:`cat_seg.analysis.report`). :func:`analyze`, :func:`compare` and
:func:`analyze_many` return plain dicts. The cost of a model depends only on its architecture, so
:func:`load_config` gives CLIP random weights unless told otherwise; parts are the ones of
:mod:`cat_seg.analysis.parts`.
"""
import datetime
import gc
import json
import os
import platform
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..engine.train_loop import AMP_PRECISIONS
from ..utils.device import module_device
from .parts import enabled_modules, not_used_at_inference, part_types, parts

DEFAULT_VOCABULARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "data", "class_names", "coco.json")


# ---------------------------------------------------------------------------------- set-up

def load_config(config_file: str, opts: Sequence[str] = (), *, random_weights: bool = True,
                device: Optional[str] = None):
    """The frozen config of ``config_file`` + ``opts`` for measuring: random CLIP weights unless
    ``random_weights`` is False, ``device`` (default: the config's; "auto" resolved). Its
    DATASETS.FOLDER_DATASETS are registered (absolute in the returned config), as training does:
    a model with HPA builds from its training set's class names."""
    from .. import build_config
    from ..data.folder_dataset import register_config_folder_datasets
    from ..config import CONFIG_FILE_FIX
    from ..utils.paths import require_file

    require_file(config_file, "config file", CONFIG_FILE_FIX)
    overrides = list(opts)
    if random_weights:
        overrides += ["MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS", "random"]
    if device:
        overrides += ["MODEL.DEVICE", device]
    return register_config_folder_datasets(build_config(config_file, overrides))


def build_analysis_model(cfg) -> nn.Module:
    """The model of ``cfg``, seeded, in evaluation mode."""
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    return build_model(cfg).eval()


def vocabulary(num_classes: int, path: str = DEFAULT_VOCABULARY) -> List[str]:
    """The first ``num_classes`` COCO-Stuff class names, then "class <i>" names if more."""
    if num_classes <= 0:
        raise ValueError(f"--num-classes must be positive, got {num_classes}")
    with open(path) as f:
        names = json.load(f)
    return (names + [f"class {i}" for i in range(len(names), num_classes)])[:num_classes]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> Tuple[float, float]:
    """Run ``fn()``; return its (wall-clock, process CPU) seconds, the device synchronised.

    On a CPU shared with other processes the wall clock also counts the time the machine gave
    to them; the process CPU time (all threads of this process) mostly does not, so its ratios
    between models stay meaningful under load."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def timing_summary(walls: Sequence[float], cpus: Sequence[float]) -> Dict[str, Any]:
    """median / min / mean wall seconds, median process CPU seconds, and every run."""
    return {"median_s": statistics.median(walls), "min_s": min(walls),
            "mean_s": statistics.fmean(walls), "cpu_median_s": statistics.median(cpus),
            "times_s": list(walls), "cpu_times_s": list(cpus)}

def part_modules(model: nn.Module, cfg) -> Dict[str, List[str]]:
    """Part name -> qualified names of the outermost modules of that part's types in ``model``."""
    found: Dict[str, List[str]] = {}
    for part, types in part_types(cfg).items():
        names = [name for name, module in model.named_modules() if isinstance(module, types)]
        found[part] = [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]
    return found


def count_parameters(model: nn.Module, cfg) -> Dict[str, Any]:
    """Parameter counts: total, trainable, inference and per part (each parameter counted once,
    in the most specific part: adapters, HPA, SDR, AFR, head, then CLIP; the rest is "other").
    Also the persistent buffer elements per part (HPA's prototypes live there)."""
    modules = dict(model.named_modules())
    owner: Dict[int, str] = {}
    buffer_owner: Dict[int, str] = {}
    for part, names in part_modules(model, cfg).items():  # most specific part first
        for name in names:
            for p in modules[name].parameters():
                owner.setdefault(id(p), part)
            for b in modules[name].buffers():
                buffer_owner.setdefault(id(b), part)
    unique = {id(p): p for p in model.parameters()}
    by_part = {part: {"total": 0, "trainable": 0, "buffers": 0} for part in parts()}
    for pid, p in unique.items():
        part = owner.get(pid, "other")
        by_part[part]["total"] += p.numel()
        by_part[part]["trainable"] += p.numel() if p.requires_grad else 0
    persistent = {id(t) for t in model.state_dict(keep_vars=True).values()}
    for b in {id(b): b for b in model.buffers()}.values():
        if id(b) in persistent:
            by_part[buffer_owner.get(id(b), "other")]["buffers"] += b.numel()
    total = sum(p.numel() for p in unique.values())
    return {
        "total": total,
        "trainable": sum(p.numel() for p in unique.values() if p.requires_grad),
        "inference": total - sum(by_part[p]["total"] for p in not_used_at_inference()),
        "by_part": by_part,
    }

# ---------------------------------------------------------------------------------- inputs

def test_input(image_size: int, device: torch.device, seed: int = 0) -> Dict[str, Any]:
    """A random (3, S, S) uint8 RGB image as the evaluation mapper delivers it."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, image_size, image_size), generator=generator,
                          dtype=torch.uint8)
    return {"image": image.to(device), "height": image_size, "width": image_size}


def training_batch(cfg, num_classes: int, batch_size: int, device: torch.device,
                   seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """``batch_size`` random crops (INPUT.CROP.SIZE, else the CLIP resolution) with blocky random
    labels of ``num_classes`` classes (blocks of one CLIP patch, so the patch-level losses of HPA
    and AFR have pure patches to work on), as the training mapper delivers them."""
    if cfg.INPUT.CROP.ENABLED and cfg.INPUT.CROP.TYPE == "absolute":
        height, width = cfg.INPUT.CROP.SIZE
    else:
        height = width = cfg.MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION
    generator = torch.Generator().manual_seed(seed)
    block = 16
    batch = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
        coarse = torch.randint(0, num_classes, (-(-height // block), -(-width // block)),
                               generator=generator)
        label = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width]
        batch.append({"image": image.to(device), "sem_seg": label.to(device)})
    return batch


# ---------------------------------------------------------------------------------- memory

class PeakMemory:
    """Peak memory of the code inside ``with PeakMemory(device) as m:`` -> ``m.result()``.

    CUDA: ``torch.cuda.max_memory_allocated`` (reset on entry). CPU on Linux: the resident-set
    high-water mark ``VmHWM``, reset on entry by writing 5 to ``/proc/self/clear_refs``; elsewhere
    ``ru_maxrss``, the process's lifetime peak (not resettable: then ``delta`` is a lower bound).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.before = self.peak = 0
        self.method = ""

    @staticmethod
    def _status_kib(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise OSError(f"/proc/self/status has no {field}")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
            self.method = "CUDA max allocated (torch.cuda.max_memory_allocated)"
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.before = self._status_kib("VmRSS") * 1024
            self.method = "CPU peak resident set (VmHWM after a reset via /proc/self/clear_refs)"
        except OSError:
            import resource

            self.before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "CPU lifetime peak resident set (ru_maxrss; not resettable here)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif "VmHWM" in self.method:
            self.peak = self._status_kib("VmHWM") * 1024
        else:
            import resource

            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def result(self) -> Dict[str, Any]:
        return {"peak_bytes": self.peak, "delta_bytes": max(self.peak - self.before, 0),
                "method": self.method}


# ---------------------------------------------------------------------------------- FLOPs

def _sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore handle of ``aten::scaled_dot_product_attention``: q (..., L, E), k (..., S, E),
    v (..., S, Ev) -> the multiply-adds of ``q·kᵀ`` and ``softmax(·)·v``: (...)·L·S·(E + Ev)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for size in q[:-2]:
        batch *= size
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


class _TestTimeForward(nn.Module):
    """Tensor in, tensor out (what fvcore's tracer needs) around the model's list-of-dicts API."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.model = model
        self.height, self.width = height, width

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model([{"image": image, "height": self.height, "width": self.width}])[0]["sem_seg"]


def count_flops(model: nn.Module, cfg, inputs: Dict[str, Any]) -> Dict[str, Any]:
    """FLOPs of one test-time forward of ``inputs`` (model in eval mode, vocabulary set, caches
    warm) with fvcore: total, per part and the operators skipped. A tracing failure is reported
    in ``"error"`` (with ``gflops`` None) instead of stopping the analysis."""
    from fvcore.nn import FlopCountAnalysis

    wrapper = _TestTimeForward(model, inputs["height"], inputs["width"])
    try:
        with torch.no_grad():
            wrapper(inputs["image"])  # caches (text embeddings, folded adapters) as at test time
            analysis = FlopCountAnalysis(wrapper, (inputs["image"],))
            analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            total = analysis.total()
            by_module = analysis.by_module()
            skipped = dict(sorted(analysis.unsupported_ops().items()))
    except Exception as error:  # tracing can fail on any Python construct; report, go on
        return {"gflops": None, "error": f"{type(error).__name__}: {error}"}
    by_part = {}
    for part, names in part_modules(model, cfg).items():
        by_part[part] = sum(by_module.get(f"model.{name}", 0) for name in names)
    # CLIPBackbone's count includes its adapters' (nested): keep each flop in one part.
    by_part["CLIP"] -= by_part["adapters"]
    by_part["other"] = total - sum(by_part.values())
    return {
        "gflops": total / 1e9,
        "by_part_gflops": {part: by_part[part] / 1e9 for part in parts()},
        "skipped_ops": skipped,
        "convention": "fvcore: one multiply-add = one flop; skipped_ops are not counted",
    }


# ---------------------------------------------------------------------------------- timing

def measure_inference(models: Sequence[nn.Module], class_names: Sequence[str], image_size: int,
                      warmup: int = 2, iters: int = 10) -> List[Dict[str, Any]]:
    """Latency and peak memory of test-time forwards, for each model (runs interleaved).

    Per model: ``set_vocabulary(class_names)``; the one-off vocabulary encoding (text encoder,
    adapter folding) timed on empty caches; ``warmup`` forwards, the last one under
    :class:`PeakMemory` (an extra forward when ``warmup`` is 0); then ``iters`` rounds timing one
    forward of every model in turn.
    """
    from ..modeling.clip import CLIPBackbone

    inputs, results = [], []
    with torch.no_grad():
        for model in models:
            model.eval()
            model.set_vocabulary(list(class_names))
            device = module_device(model)
            inputs.append(test_input(image_size, device))
            backbones = [m for m in model.modules() if isinstance(m, CLIPBackbone)]
            for backbone in backbones:
                backbone.clear_caches()
            _sync(device)
            start = time.perf_counter()
            for backbone in backbones:
                backbone.encode_text(list(class_names))
            _sync(device)
            results.append({"vocabulary_encoding_s": time.perf_counter() - start})
            for _ in range(warmup - 1):
                model([inputs[-1]])
            with PeakMemory(device) as memory:
                model([inputs[-1]])
            results[-1]["memory"] = memory.result()
        runs: List[List[Tuple[float, float]]] = [[] for _ in models]
        for _ in range(iters):
            for model, x, model_runs in zip(models, inputs, runs):
                model_runs.append(timed(lambda: model([x]), module_device(model)))
    for result, model_runs in zip(results, runs):
        walls, cpus = zip(*model_runs)
        result.update(timing_summary(walls, cpus), iters=iters, warmup=warmup)
    return results


def measure_training_step(model: nn.Module, cfg, batch_size: int = 1, warmup: int = 1,
                          iters: int = 3) -> Dict[str, Any]:
    """Median time of forward + backward + optimizer step on a synthetic batch, and the peak
    memory over all the steps, warm-up and timed (at least two steps are run).

    The peak spans every step because it is not reached in the first one: the first step also
    allocates the optimizer's state, and on a CPU with freed memory kept for reuse
    (:mod:`cat_seg.utils.allocator`) the resident set keeps growing over the first steps until
    the heap's layout settles (ViT-B on a 2-core CPU: 10,498 MiB in the first step, 11,999 MiB
    over four; docs/benchmarks.md).
    Leaves the model in training mode with changed weights."""
    from ..engine import build_optimizer

    device = module_device(model)
    model.train()
    if hasattr(model, "set_iteration"):  # SDR's weight schedule follows the trainer's iteration
        model.set_iteration(0)
    num_classes = len(model.vocabulary([]))
    batch = training_batch(cfg, num_classes, batch_size, device)
    optimizer = build_optimizer(cfg, model)
    amp = cfg.SOLVER.AMP.ENABLED
    dtype = AMP_PRECISIONS[cfg.SOLVER.AMP.PRECISION]
    scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            losses = model(batch)
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    with PeakMemory(device) as memory:
        for _ in range(max(warmup, 2 - iters)):
            step()
        walls, cpus = zip(*(timed(step, device) for _ in range(iters)))
    return {**timing_summary(walls, cpus), "iters": iters, "warmup": warmup, "batch_size": batch_size,
            "crop": list(batch[0]["image"].shape[-2:]), "num_classes": num_classes,
            "amp": cfg.SOLVER.AMP.PRECISION if amp else None, "memory": memory.result()}

def machine_info(device: torch.device) -> Dict[str, Any]:
    """Date, CPU, threads, torch and (on GPU) the device, to put beside the numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device)}
    if hasattr(os, "getloadavg"):  # other processes on the machine skew timings: record them
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def describe(cfg, image_size: int, num_classes: int) -> Dict[str, Any]:
    head = cfg.MODEL.SEM_SEG_HEAD
    return {"clip": head.CLIP_PRETRAINED, "clip_resolution": head.CLIP_RESOLUTION,
            "clip_finetune": head.CLIP_FINETUNE, "clip_weights": head.CLIP_WEIGHTS,
            "modules": enabled_modules(cfg),
            "image_size": image_size, "num_classes": num_classes,
            "test_path": "sliding window" if cfg.TEST.SLIDING_WINDOW else "whole image"}


def analyze_many(cfgs: Sequence, *, labels: Optional[Sequence[str]] = None,
                 image_size: Optional[int] = None, num_classes: int = 171, warmup: int = 2,
                 iters: int = 10, flops: bool = True, inference: bool = True, train: bool = True,
                 batch_size: int = 1, train_warmup: int = 1, train_iters: int = 3
                 ) -> List[Dict[str, Any]]:
    """Measure every config of ``cfgs`` in this process (inference latency interleaved).

    All models are alive together for the inference measurements only; the training steps then
    run on one freshly built model at a time (same seed, same architecture), so the peak memory
    of the process is that of all models at inference or of one model training, not both.
    ``image_size`` defaults to each config's CLIP resolution. Returns one dict per config with
    ``config`` (what was measured), ``params``, ``flops`` (unless ``flops=False``),
    ``inference`` (unless ``inference=False``), ``train`` (unless ``train=False``) and ``machine``.
    Skipping inference keeps the peak memory to one training model (e.g. ViT-L on a small host).
    """
    labels = list(labels) if labels is not None else [f"config {i}" for i in range(len(cfgs))]
    class_names = vocabulary(num_classes)
    sizes = [image_size or cfg.MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION for cfg in cfgs]
    models = [build_analysis_model(cfg) for cfg in cfgs]
    results = [static_analysis(label, cfg, model, size, class_names, flops)
               for label, cfg, model, size in zip(labels, cfgs, models, sizes)]
    if not inference:
        timings = []
    elif len(set(sizes)) == 1:
        timings = measure_inference(models, class_names, sizes[0], warmup, iters)
    else:  # different inputs: interleaving would not compare like with like anyway
        timings = [measure_inference([m], class_names, s, warmup, iters)[0]
                   for m, s in zip(models, sizes)]
    for result, timing in zip(results, timings):
        result["inference"] = timing
    models.clear()  # the only references: the training phase starts with their memory free
    gc.collect()
    if train:
        for result, cfg in zip(results, cfgs):
            result["train"] = measure_training_step(build_analysis_model(cfg), cfg, batch_size,
                                                    train_warmup, train_iters)
            gc.collect()
    return results


def static_analysis(label: str, cfg, model: nn.Module, image_size: int,
                    class_names: Sequence[str], flops: bool = True) -> Dict[str, Any]:
    """What needs no timing: the config, the machine, parameters and (if ``flops``) FLOPs."""
    num_classes = len(class_names)
    result = {"label": label, "config": describe(cfg, image_size, num_classes),
              "machine": machine_info(module_device(model)), "params": count_parameters(model, cfg)}
    if flops:
        model.set_vocabulary(list(class_names))
        result["flops"] = count_flops(model, cfg, test_input(image_size, module_device(model)))
    return result


def analyze(cfg, **kwargs) -> Dict[str, Any]:
    """:func:`analyze_many` of one config."""
    return analyze_many([cfg], **kwargs)[0]


# (result path, name) of every ratio --compare reports.
RATIO_FIELDS = (
    (("params", "total"), "params"),
    (("params", "trainable"), "trainable params"),
    (("params", "inference"), "inference params"),
    (("flops", "gflops"), "FLOPs"),
    (("inference", "median_s"), "inference latency"),
    (("inference", "cpu_median_s"), "inference CPU time"),
    (("inference", "memory", "peak_bytes"), "inference peak memory"),
    (("train", "median_s"), "training step"),
    (("train", "cpu_median_s"), "training step CPU time"),
    (("train", "memory", "peak_bytes"), "training peak memory"),
)


def _get(result: Dict[str, Any], path: Sequence[str]):
    for key in path:
        if not isinstance(result, dict) or result.get(key) is None:
            return None
        result = result[key]
    return result


def ratios(base: Dict[str, Any], other: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """other / base of every :data:`RATIO_FIELDS` both results have (None where one lacks it)."""
    out = {}
    for path, name in RATIO_FIELDS:
        a, b = _get(base, path), _get(other, path)
        out[name] = (b / a) if a and b is not None else None
    return out


def compare(cfg, others: Sequence, labels: Optional[Sequence[str]] = None,
            **kwargs) -> Dict[str, Any]:
    """``cfg`` and every config of ``others`` measured in one run.

    Returns ``{"base": result, "compare": [result, ...], "ratios": [other / base, ...]}``.
    """
    results = analyze_many([cfg, *others], labels=labels, **kwargs)
    return {"base": results[0], "compare": results[1:],
            "ratios": [ratios(results[0], other) for other in results[1:]]}
