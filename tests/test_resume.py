"""Resume after a crash: ``python train_net.py`` killed with SIGKILL mid-run, restarted with
``--resume``, continues exactly from the last checkpoint; stray files never get loaded."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cat_seg.engine import AtomicCheckpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ITER = 6

# Runs train_net.py's command line (``__main__``) on a tiny synthetic dataset. A probe hook,
# appended after the trainer's own hooks, records what the trainer and the model hold before the
# first step (after the resume): start iteration, the model's (SDR) iteration, the scheduler's
# step, AdamW's step counts and HPA's prototypes.
LAUNCHER = textwrap.dedent("""
    import json, runpy, sys
    import torch
    from detectron2.engine import DefaultTrainer, HookBase
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from cat_seg.engine import unwrap_model

    # Three classes: the text encoder runs over the vocabulary at every step.
    records = [dict(file_name=f"{data}/image{{i}}.png", sem_seg_file_name=f"{data}/label{{i}}.png",
                    height=64, width=80) for i in range(2)]
    DatasetCatalog.register("resume_train", lambda: records)
    MetadataCatalog.get("resume_train").set(stuff_classes=["sky", "grass", "water"],
                                            ignore_label=255, evaluator_type="sem_seg")

    class Probe(HookBase):
        def before_step(self):
            if self.trainer.iter != self.trainer.start_iter:
                return
            model = unwrap_model(self.trainer.model)
            optimizer = self.trainer.optimizer
            torch.save({{
                "start_iter": self.trainer.start_iter,
                "model_iteration": model.iteration,
                "sdr_weight": float(model.self_distillation.weight(model.iteration)),
                "scheduler_last_epoch": self.trainer.scheduler.last_epoch,
                "optimizer_steps": [float(s["step"]) for s in optimizer.state.values()],
                "exp_avg_sq_sum": float(sum(s["exp_avg_sq"].sum() for s in optimizer.state.values())),
                "prototypes": model.prototype_alignment.prototypes.clone(),
            }}, {probe!r})

    # train_net's Trainer extends DefaultTrainer.build_hooks, so the probe comes last.
    build_hooks = DefaultTrainer.build_hooks
    DefaultTrainer.build_hooks = lambda self: build_hooks(self) + [Probe()]
    sys.argv = ["train_net.py"] + sys.argv[1:]
    runpy.run_path({train_net!r}, run_name="__main__")
""")


def _write_data(folder):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        label = rng.integers(0, 3, (4, 5)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
        image = (60 * label[..., None] + rng.integers(0, 60, (64, 80, 3))).astype(np.uint8)
        Image.fromarray(image).save(folder / f"image{i}.png")
        Image.fromarray(label).save(folder / f"label{i}.png")


def _command(tmp_path, output, resume):
    _write_data(tmp_path / "data")
    probe = str(tmp_path / ("probe_resumed.pt" if resume else "probe_first.pt"))
    script = tmp_path / "launch_train_net.py"
    script.write_text(LAUNCHER.format(data=str(tmp_path / "data"), probe=probe,
                                      train_net=os.path.join(ROOT, "train_net.py")))
    return [sys.executable, str(script), "--config-file", "configs/synthetic/quickstart.yaml",
            *(["--resume"] if resume else []),
            "OUTPUT_DIR", str(output), "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.IMS_PER_BATCH", "1", "SOLVER.MAX_ITER", str(MAX_ITER),
            "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()",
            "DATASETS.TRAIN", "('resume_train',)",
            "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.CROP.SIZE", "(64, 64)", "INPUT.SIZE_DIVISIBILITY", "64"], probe


def _tagged(output):
    try:
        return (output / "last_checkpoint").read_text()
    except FileNotFoundError:
        return None


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_the_last_checkpoint(tmp_path):
    output = tmp_path / "run"
    command, _ = _command(tmp_path, output, resume=False)
    # The launcher runs from tmp_path: the repository comes from PYTHONPATH.
    pythonpath = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=pythonpath)
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.time() + 240
            while _tagged(output) is None and process.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)  # mid-run: the next steps are still to come
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    last = _tagged(output)
    assert last is not None and last != "model_final.pth", (tmp_path / "first.log").read_text()[-3000:]
    checkpoint = torch.load(output / last, weights_only=True)
    assert checkpoint["iteration"] < MAX_ITER - 1  # not the final one: steps are left to resume

    # Files a crash (or a stray copy) can leave: a temporary file of an interrupted atomic write
    # and a truncated checkpoint that was never tagged. --resume follows last_checkpoint only.
    (output / "model_0000007.pth.tmp.4242").write_bytes(b"\x80\x02partial")
    (output / "model_0000004.pth").write_bytes((output / last).read_bytes()[:100])

    command, probe_path = _command(tmp_path, output, resume=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    probe = torch.load(probe_path, weights_only=True)
    resumed_at = checkpoint["iteration"] + 1
    assert probe["start_iter"] == resumed_at
    assert probe["model_iteration"] == resumed_at  # SDR's schedule t = trainer iteration
    assert probe["sdr_weight"] != pytest.approx(float(_sdr_weight_at_zero(output)))
    trainer_state = checkpoint["trainer"]
    assert probe["scheduler_last_epoch"] == trainer_state["hooks"]["LRScheduler"]["last_epoch"] \
        == resumed_at
    saved_optimizer = trainer_state["_trainer"]["optimizer"]["state"]
    assert sorted(probe["optimizer_steps"]) == sorted(float(s["step"]) for s in saved_optimizer.values())
    assert set(probe["optimizer_steps"]) == {float(resumed_at)}
    assert probe["exp_avg_sq_sum"] == pytest.approx(
        float(sum(s["exp_avg_sq"].sum() for s in saved_optimizer.values())), rel=1e-6)
    assert torch.equal(probe["prototypes"], checkpoint["model"]["prototype_alignment.prototypes"])

    final = torch.load(output / "model_final.pth", weights_only=True)
    assert final["iteration"] == MAX_ITER - 1
    assert not torch.equal(final["model"]["prototype_alignment.prototypes"], probe["prototypes"])
    assert (output / "last_checkpoint").read_text() == "model_final.pth"


def _sdr_weight_at_zero(output):
    """w(0) of the run's SDR schedule, from the config the run wrote."""
    from cat_seg.modeling.hyperspherical_innovations import SDR
    from helpers.configs import make_cfg

    return SDR(make_cfg(output / "config.yaml")).weight(0)


def test_resume_loads_only_the_tagged_checkpoint(tmp_path):
    """Leftover temporary files and truncated untagged checkpoints are never loaded."""
    torch.manual_seed(0)
    saved = nn.Linear(3, 3)
    AtomicCheckpointer(saved, save_dir=str(tmp_path)).save("model_0000001", iteration=1)
    (tmp_path / "model_0000003.pth").write_bytes(b"truncated")  # newer, untagged, broken
    (tmp_path / "model_0000003.pth.tmp.999").write_bytes(b"partial write")
    (tmp_path / "model_final.pth.tmp.1000").write_bytes(b"")

    model = nn.Linear(3, 3)
    loaded = AtomicCheckpointer(model, save_dir=str(tmp_path)).resume_or_load("", resume=True)
    assert loaded["iteration"] == 1
    assert torch.equal(model.weight, saved.weight)

    # Without a tag (e.g. killed before the first save completed) nothing is resumed.
    os.remove(tmp_path / "last_checkpoint")
    fresh = nn.Linear(3, 3)
    before = fresh.weight.detach().clone()
    assert AtomicCheckpointer(fresh, save_dir=str(tmp_path)).resume_or_load("", resume=True) == {}
    assert torch.equal(fresh.weight, before)


def test_checkpoints_hold_only_weights_only_loadable_data(tmp_path):
    """train_net's checkpoints (model, optimizer, scheduler, iteration) load with
    ``torch.load(weights_only=True)``; the loader uses it, so a file that runs code is refused."""
    model = nn.Linear(3, 3)
    AtomicCheckpointer(model, save_dir=str(tmp_path)).save("model_final", iteration=3,
                                                          meta={"note": "ok"})
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 3

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": model.state_dict(), "payload": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        AtomicCheckpointer(nn.Linear(3, 3)).load(str(tmp_path / "evil.pth"))


@pytest.mark.slow
def test_ctrl_c_then_resume_with_changes_through_the_command_line(tmp_path):
    """train_net.py's own command line: Ctrl-C ends in one line naming the iteration and the
    checkpoint --resume continues from (exit 130); --resume with another batch size is refused
    listing it; --allow-config-change records it and, with SOLVER.MAX_ITER at the checkpoint
    reached, the finished run says so and exits 0."""
    output = tmp_path / "run"
    pythonpath = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=pythonpath)

    def command(*flags_and_opts, max_iter=400):
        base, _ = _command(tmp_path, output, resume=False)
        flags = [a for a in flags_and_opts if a.startswith("--")]
        opts = [a for a in flags_and_opts if not a.startswith("--")]
        base[base.index("SOLVER.MAX_ITER") + 1] = str(max_iter)
        return base[:4] + flags + base[4:] + opts

    # SIGINT back to its default in the child: a shell's background job (a CI runner's, a
    # nohup) inherits it ignored, and Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(command(), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while not (output / "model_0000003.pth").exists() and process.poll() is None \
                and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-3000:]
    last = _tagged(output)
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("[train_net] training interrupted at iteration ") and " of 400; " in line
    assert line.endswith(f"`--resume` (RESUME=1 for run_ahs.sh) continues from {output / last}")
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    reached = torch.load(output / last, weights_only=True)["iteration"]

    saved = (output / "config.yaml").read_text()
    refused = subprocess.run(command("--resume", "SOLVER.IMS_PER_BATCH", "2"), cwd=ROOT,
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 1
    assert ("SOLVER.IMS_PER_BATCH: saved 1, now 2" in refused.stderr
            and "--allow-config-change" in refused.stderr), refused.stderr[-3000:]
    assert _tagged(output) == last and not (output / "config_history.yaml").exists()

    finished = subprocess.run(command("--resume", "--allow-config-change", max_iter=reached + 1),
                              cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"is iteration {reached + 1} of SOLVER.MAX_ITER {reached + 1}; nothing to train" \
        in finished.stdout
    history = (output / "config_history.yaml").read_text()
    assert "SOLVER.MAX_ITER" in history and "now: %d" % (reached + 1) in history
    assert (output / "config.yaml").read_text() == saved and _tagged(output) == last


def test_sigterm_during_training_ends_like_ctrl_c(tmp_path, monkeypatch):
    # A scheduler's SIGTERM inside the training loop becomes the one-line "stopped by SIGTERM
    # ...; --resume continues from ..." (TrainingInterrupted), and the process's own SIGTERM
    # handler is back afterwards.
    from detectron2.engine import DefaultTrainer
    from cat_seg.engine.trainer import (Terminated, Trainer, TrainingInterrupted,
                                        sigterm_stops_training)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with sigterm_stops_training():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode; never reached
    assert signal.getsignal(signal.SIGTERM) is before

    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    trainer = Trainer.__new__(Trainer)
    trainer.iter, trainer.max_iter = 12, 500
    trainer.cfg = type("Cfg", (), {"OUTPUT_DIR": str(tmp_path)})()
    monkeypatch.setattr(DefaultTrainer, "train",
                        lambda self: os.kill(os.getpid(), signal.SIGTERM) or time.sleep(1))
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.train()
    assert str(stopped.value) == (
        f"training stopped by SIGTERM at iteration 12 of 500; `--resume` (RESUME=1 for "
        f"run_ahs.sh) continues from {tmp_path / 'model_0000009.pth'}")
    assert signal.getsignal(signal.SIGTERM) is before
