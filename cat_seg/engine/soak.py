"""Soak test of crash-resume (tools/soak_resume.py): a training killed (SIGKILL) at random points
and resumed with ``--resume`` each time must end with the same weights as an uninterrupted run.
The tool's docstring describes the procedure and the report.
"""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from ..utils.state_dicts import load_weights_only
from .checkpointer import non_finite_tensors

logger = logging.getLogger(__name__)

# detectron2's CommonMetricPrinter: " iter: 139  total_loss: ..." (every 20 iterations and at the end)
_ITER = re.compile(rb"\biter: (\d+)\b")


def _command(args, root: str, output: str, resume: bool) -> List[str]:
    return [sys.executable, os.path.join(root, "train_net.py"), "--config-file", args.config_file,
            *(["--resume"] if resume else []),
            "OUTPUT_DIR", output, "SEED", str(args.seed), "MODEL.DEVICE", "cpu",
            "SOLVER.MAX_ITER", str(args.iters),
            "SOLVER.CHECKPOINT_PERIOD", str(args.checkpoint_period), "TEST.EVAL_PERIOD", "0",
            *args.opts]


def _progress(log_path: str, output: str) -> int:
    """The latest iteration the run shows: in its log (every 20) or its tagged checkpoint."""
    latest = -1
    try:
        with open(log_path, "rb") as f:
            found = _ITER.findall(f.read())
        latest = int(found[-1]) if found else -1
    except FileNotFoundError:
        pass
    try:
        tagged = re.findall(r"\d+", open(os.path.join(output, "last_checkpoint")).read())
        latest = max(latest, int(tagged[0]) if tagged else -1)
    except (FileNotFoundError, ValueError):
        pass
    return latest


def check_checkpoints(folder: str) -> Dict[str, object]:
    """Every ``*.pth`` in ``folder`` must load; ``last_checkpoint`` must name a finite one."""
    problems, loaded = [], 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".pth"):
            continue
        try:
            load_weights_only(os.path.join(folder, name))
            loaded += 1
        except Exception as error:  # noqa: BLE001 - reported
            problems.append(f"{name} unreadable: {type(error).__name__}: {error}")
    tag = os.path.join(folder, "last_checkpoint")
    last = None
    if os.path.isfile(tag):
        last = open(tag).read().strip()
        path = os.path.join(folder, last)
        if not os.path.isfile(path):
            problems.append(f"last_checkpoint names {last}, which does not exist")
        else:
            bad = non_finite_tensors(load_weights_only(path)["model"])
            if bad:
                problems.append(f"last_checkpoint names {last}, whose weights are not finite ({bad[:3]})")
    return {"checkpoints_loaded": loaded, "last_checkpoint": last, "problems": problems}


def _run_to_end(command: List[str], log_path: str, env: dict, cwd: str) -> int:
    with open(log_path, "ab") as log:
        return subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode


def _run_until(command: List[str], log_path: str, output: str, env: dict, target: int,
               delay: float, cwd: str) -> Optional[int]:
    """Start ``command``; SIGKILL it ``delay`` s after its log reaches iteration ``target``.
    Returns the iteration it was killed after, or None when it finished first."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while process.poll() is None and _progress(log_path, output) < target:
                time.sleep(0.2)
            time.sleep(delay)
            if process.poll() is not None:
                return None
            killed_at = _progress(log_path, output)
            process.send_signal(signal.SIGKILL)
            process.wait()
            return killed_at
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def compare_final(a: str, b: str) -> Dict[str, object]:
    first, second = load_weights_only(a), load_weights_only(b)
    ma, mb = first["model"], second["model"]
    if set(ma) != set(mb):
        return {"same_keys": False, "max_abs_diff": float("inf"),
                "only_in_one": sorted(set(ma) ^ set(mb))[:10]}
    diffs = {k: float((ma[k].double() - mb[k].double()).abs().max()) if ma[k].numel() else 0.0
             for k in ma if ma[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    exact = all(torch.equal(ma[k], mb[k]) for k in ma)
    return {"same_keys": True, "max_abs_diff": diffs[worst], "worst_tensor": worst,
            "bitwise_equal": exact, "iterations": [first.get("iteration"), second.get("iteration")]}


def soak(args, root: str) -> Dict[str, object]:
    """The soak test of tools/soak_resume.py (its docstring describes it; ``args`` is its argument
    namespace) on ``root``'s train_net.py, run from ``root``; returns the report."""
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.output, exist_ok=True)
    uninterrupted = os.path.join(args.output, "uninterrupted")
    killed = os.path.join(args.output, "killed")
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    lo = min(args.checkpoint_period, args.iters - 2)
    targets = sorted(args.kill_at or (int(t) for t in rng.integers(lo, args.iters - 1, args.kills)))
    report: Dict[str, object] = {"iters": args.iters, "checkpoint_period": args.checkpoint_period,
                                 "seed": args.seed, "kill_targets": targets, "kills": [],
                                 "problems": []}
    started = time.time()
    # The uninterrupted run goes alongside the killed one (a second core when there is one).
    reference = subprocess.Popen(_command(args, root, uninterrupted, resume=False), cwd=root,
                                 stdout=open(os.path.join(args.output, "uninterrupted.log"), "ab"),
                                 stderr=subprocess.STDOUT, env=env)
    log = os.path.join(args.output, "killed.log")
    resume = False
    for target in targets:
        delay = float(rng.uniform(0, args.jitter))
        at = _run_until(_command(args, root, killed, resume), log, killed, env, target, delay,
                        cwd=root)
        resume = True
        if at is None:
            report["problems"].append(f"the run finished before the kill at iteration {target}")
            break
        state = check_checkpoints(killed) if os.path.isdir(killed) else {"problems": []}
        report["kills"].append({"target": target, "logged_iteration": at, "delay_s": round(delay, 2),
                                **state})
        report["problems"] += [f"after the kill at {at}: {p}" for p in state["problems"]]
        logger.info(f"[soak] killed after iteration {at} (target {target}); last_checkpoint "
                    f"{state.get('last_checkpoint')}, {state.get('checkpoints_loaded')} "
                    "checkpoints readable")
    code = _run_to_end(_command(args, root, killed, resume), log, env, root)
    if code != 0:
        report["problems"].append(f"the resumed run exited with {code} (see {log})")
    if reference.wait() != 0:
        report["problems"].append(f"the uninterrupted run exited with {reference.returncode}")
    report["wall_s"] = round(time.time() - started, 1)
    finals = [os.path.join(d, "model_final.pth") for d in (uninterrupted, killed)]
    if all(os.path.isfile(f) for f in finals):
        report["final"] = compare_final(*finals)
        report["final_checkpoints"] = check_checkpoints(killed)
        report["problems"] += report["final_checkpoints"]["problems"]
        if report["final"]["max_abs_diff"] > args.tolerance:
            report["problems"].append(
                f"final weights differ by {report['final']['max_abs_diff']:.3g} > tolerance "
                f"{args.tolerance:g} (in {report['final'].get('worst_tensor')})")
    else:
        report["problems"].append("a run wrote no model_final.pth")
    report["passed"] = not report["problems"]
    with open(os.path.join(args.output, "soak_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report
