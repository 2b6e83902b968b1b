"""Contrastive pretraining of the tiny CLIP (AHS-Tiny/16) on captioned scenes of the synthetic
world: the training loop, resume state and export behind tools/pretrain_clip.py (whose docstring
describes the run). ``args`` is that script's argument namespace.

Deterministic for a seed: the model is initialised from it and batch k is a pure function of
(seed, k), so a run resumed with ``--resume`` ends with the same weights as an uninterrupted one.
"""
import hashlib
import json
import logging
import math
import os
import time
from typing import Optional

import torch
from tqdm import tqdm

from ..data.synthetic.image_text import ALL_CLASSES, SceneCropStream
from ..modeling.clip.architectures import TINY_NAME
from ..modeling.clip.backbone import CLIPBackbone
from ..modeling.clip.pretraining import (
    clip_embeddings,
    contrastive_loss,
    parameter_groups,
    same_caption_targets,
    to_open_clip_state_dict,
)
from ..utils.state_dicts import load_weights_only

logger = logging.getLogger(__name__)


def build_model(seed: int, resolution: int) -> CLIPBackbone:
    """A randomly initialised tiny CLIP (seeded) whose every weight trains."""
    torch.manual_seed(seed)
    backbone = CLIPBackbone(architecture=TINY_NAME, weights="random", resolution=resolution,
                            finetune="frozen")
    backbone.clip.requires_grad_(True)
    return backbone


def learning_rate(step: int, args) -> float:
    """Linear warm-up to --lr over --warmup steps, then cosine decay to 0 at --steps."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return 0.5 * args.lr * (1 + math.cos(math.pi * progress))


def save_atomic(obj, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_output_paths(args) -> None:
    """Fail before any work when an output location cannot be written."""
    for folder in (os.path.dirname(os.path.abspath(args.output)), os.path.abspath(args.work_dir)):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise SystemExit(f"[pretrain_clip] cannot create the folder {folder} ({error.strerror}); "
                             "choose another --output / --work-dir")


def train(args) -> Optional[CLIPBackbone]:
    """Train (or continue with --resume); None when --stop-after ended the run early."""
    check_output_paths(args)
    model = build_model(args.seed, args.resolution)
    clip = model.clip
    optimizer = torch.optim.AdamW(parameter_groups(clip, args.weight_decay), lr=args.lr,
                                  betas=(0.9, 0.98), eps=1e-6)
    state_path = os.path.join(args.work_dir, "last.pt")
    log_path = os.path.join(args.work_dir, "log.jsonl")
    start = 0
    if args.resume and os.path.isfile(state_path):
        state = load_weights_only(state_path)
        if state["args"] != _run_signature(args):
            raise SystemExit(f"[pretrain_clip] {state_path} was written by a run with other settings "
                             f"({state['args']}); resume with those, or use another --work-dir")
        clip.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        # Steps logged after the checkpoint (an interrupted run) are trained again: forget them.
        if os.path.isfile(log_path):
            with open(log_path) as f:
                kept = [line for line in f if json.loads(line)["step"] <= start]
            with open(log_path, "w") as f:
                f.writelines(kept)
        logger.info(f"[pretrain_clip] resumed from {state_path} at step {start}")
    elif os.path.exists(log_path):
        os.remove(log_path)  # a fresh run starts a fresh log

    t0 = time.time()
    stream = SceneCropStream(num_scenes=args.scenes, scene_size=args.scene_size,
                             crop_size=args.resolution, min_scale=args.min_scale)
    logger.info(f"[pretrain_clip] {len(stream)} scenes of {len(ALL_CLASSES)} classes rendered in "
          f"{time.time() - t0:.1f} s; {args.steps} steps of {args.batch_size} pairs")
    mean = torch.tensor(model.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.pixel_std).view(1, 3, 1, 1)
    clip.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="pretrain",
               dynamic_ncols=True, disable=args.no_progress)
    for step in bar:
        batch = stream.batch(args.batch_size, args.seed, step)
        images = (batch.images.float() - mean) / std
        tokens = model.tokenizer(batch.captions)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        image, dense, text = clip_embeddings(clip, images, tokens)
        targets = same_caption_targets(batch.present)
        loss_global = contrastive_loss(image, text, clip.logit_scale, targets)
        loss = loss_global
        loss_dense = None
        if args.dense_loss_weight > 0:
            loss_dense = contrastive_loss(dense, text, clip.logit_scale, targets)
            loss = loss + args.dense_loss_weight * loss_dense
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), args.grad_clip)
        optimizer.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100.0))
        record = {"step": step + 1, "loss": loss.item(), "loss_global": loss_global.item(),
                  "logit_scale": clip.logit_scale.exp().item(), "lr": learning_rate(step, args)}
        if loss_dense is not None:
            record["loss_dense"] = loss_dense.item()
        if not math.isfinite(record["loss"]):
            raise SystemExit(f"[pretrain_clip] the loss is {record['loss']} at step {step + 1}; "
                             "lower --lr")
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['loss']:.3f}", scale=f"{record['logit_scale']:.1f}")
        done = step + 1
        stopping = args.stop_after and done - start >= args.stop_after
        if done % args.checkpoint_every == 0 or done == args.steps or stopping:
            save_atomic({"model": clip.state_dict(), "optimizer": optimizer.state_dict(),
                         "step": done, "args": _run_signature(args)}, state_path)
        if stopping and done < args.steps:
            bar.close()
            logger.info(f"[pretrain_clip] stopped after {args.stop_after} steps at step {done} "
                  f"(--stop-after); continue with --resume")
            return None
    bar.close()
    logger.info(f"[pretrain_clip] trained in {time.time() - t0:.0f} s (this process)")
    return model


def _run_signature(args) -> dict:
    """The settings a resumed run must share with the run it continues."""
    keys = ("seed", "steps", "batch_size", "lr", "warmup", "weight_decay", "resolution", "scenes",
            "scene_size", "min_scale", "dense_loss_weight", "grad_clip")
    return {k: getattr(args, k) for k in keys}


def export(model: CLIPBackbone, args) -> str:
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    save_atomic(to_open_clip_state_dict(model.clip, dtype), args.output)
    digest = sha256(args.output)
    size = os.path.getsize(args.output) / 2 ** 20
    logger.info(f"[pretrain_clip] wrote {args.output} ({size:.1f} MiB, {args.dtype}), sha256 {digest}")
    return digest
