"""cat_seg behaves like a library (issue 27): it logs instead of printing, changes nothing
process-wide unless an entry point asks, and its imports do not warn about code it never runs.
Entry points (``ahs-seg``, train_net.py, tools/*.py) show its lines on the terminal: INFO on
stdout, warnings and errors on stderr, during a training or evaluation run too."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "cat_seg")

# Where the process environment may be written: the entry points' own set-up.
ENVIRONMENT_WRITERS = {
    ("cat_seg/utils/console.py", "prepare_entry_point"),  # console + allocator for the workers
    ("cat_seg/utils/allocator.py", "reuse_freed_memory"),  # called by prepare_entry_point only
}
# Who may call prepare_entry_point: the command lines inside the package.
ENTRY_POINT_CALLERS = {"cat_seg/cli/main.py", "cat_seg/cli/analyze.py", "cat_seg/cli/convert.py",
                       "cat_seg/engine/launch.py"}


def _sources():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, ROOT), ast.parse(f.read(), filename=path)


def _functions(tree):
    """node -> the name of the innermost function holding it ("" at module level)."""
    owner = {}

    def visit(node, name):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else name
            owner[child] = inner
            visit(child, inner)
    visit(tree, "")
    return owner


def _is_os_environ(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def _environment_writes(tree):
    """Nodes that change the process environment: os.environ[...] = / del, its mutating methods,
    os.putenv / os.unsetenv."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            if any(isinstance(t, ast.Subscript) and _is_os_environ(t.value) for t in targets):
                yield node
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            function = node.func
            if _is_os_environ(function.value) and function.attr in (
                    "setdefault", "update", "pop", "popitem", "clear", "__setitem__"):
                yield node
            elif isinstance(function.value, ast.Name) and function.value.id == "os" \
                    and function.attr in ("putenv", "unsetenv"):
                yield node


def _calls_to(tree, name):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            called = function.id if isinstance(function, ast.Name) else \
                function.attr if isinstance(function, ast.Attribute) else None
            if called == name:
                yield node


def test_the_library_never_prints():
    found = [f"{path}:{node.lineno}" for path, tree in _sources()
             for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id == "print"]
    assert not found, ("print() in cat_seg/ (log with logging.getLogger(__name__) instead; the "
                       "entry points show INFO on stdout, warnings on stderr): " + ", ".join(found))


def test_only_entry_points_change_the_process_environment_or_the_allocator():
    writes, settings, allocators = [], [], []
    for path, tree in _sources():
        owner = _functions(tree)
        writes += [f"{path}:{node.lineno} ({owner.get(node) or 'module level'})"
                   for node in _environment_writes(tree)
                   if (path, owner.get(node)) not in ENVIRONMENT_WRITERS]
        if path not in ENTRY_POINT_CALLERS:
            settings += [f"{path}:{node.lineno}"
                         for node in _calls_to(tree, "prepare_entry_point")]
        if path != "cat_seg/utils/console.py":
            allocators += [f"{path}:{node.lineno}"
                           for node in _calls_to(tree, "reuse_freed_memory")]
        if path != "cat_seg/utils/allocator.py":
            allocators += [f"{path}:{node.lineno}" for node in _calls_to(tree, "mallopt")]
    assert not writes, "the process environment written outside an entry point: " + ", ".join(writes)
    assert not settings, "prepare_entry_point called by library code: " + ", ".join(settings)
    assert not allocators, "glibc's allocator changed outside prepare_entry_point: " + \
        ", ".join(allocators)
    # The command lines that do call it, call it when they run, not when imported.
    for path, tree in _sources():
        if path in ENTRY_POINT_CALLERS:
            owner = _functions(tree)
            assert "" not in {owner[n] for n in _calls_to(tree, "prepare_entry_point")}, path


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_importing_the_library_configures_nothing_and_mutes_only_the_jit_warning():
    # Every module a command line uses, imported with every warning shown.
    code = (
        "import logging, os, warnings\n"
        "warnings.simplefilter('always')\n"
        "before = dict(os.environ)\n"
        "import cat_seg, cat_seg.cli.main, cat_seg.cli.check_data, cat_seg.cli.evaluate\n"
        "import cat_seg.engine.benchmarks, cat_seg.engine.launch, cat_seg.demo.images\n"
        "import cat_seg.analysis.measure, cat_seg.analysis.research_loop\n"
        "import cat_seg.evaluation.synthetic_zero_shot\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
        "assert logging.getLogger('cat_seg').handlers == []\n"
        "assert logging.getLogger('cat_seg').level == logging.NOTSET\n"
        "muted = [f for f in warnings.filters if f[1] is not None and 'jit.script' in f[1].pattern]\n"
        "assert not muted, muted  # restored: other code that scripts a function is warned\n"
        "print('ok')\n")
    result = _python(code, PYTHONWARNINGS="always")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
    assert "torch.jit.script" not in result.stderr, result.stderr[-3000:]


def test_entry_point_streams_before_and_during_a_run(tmp_path):
    """prepare_entry_point: INFO on stdout as it is, warnings on stderr as ``WARNING: ...``,
    errors as they are; during a run (detectron2's setup_logger as launch.setup calls it) the same
    streams, and log.txt gets every line. A worker process an entry point starts (it inherits
    AHS_SEG_CONSOLE) shows rank 0's lines the same way, other ranks none."""
    run = (
        "import logging, sys\n"
        "from detectron2.utils.logger import setup_logger\n"
        "from cat_seg.utils.console import console_for_run, prepare_entry_point\n"
        "if sys.argv[1] == 'entry':\n"
        "    prepare_entry_point(allocator=False)\n"
        "log = logging.getLogger('cat_seg.engine.benchmarks')\n"
        "log.info('[eval] before the run')\n"
        "rank = int(sys.argv[2])\n"
        "console = console_for_run(rank)\n"
        "setup_logger(output=sys.argv[3], distributed_rank=rank, name='cat_seg',\n"
        "             configure_stdout=not console, enable_propagation=console)\n"
        "log.debug('[eval] debug, for log.txt only')\n"
        "log.info('| mIoU | 1.0 |')\n"
        "log.warning('[eval] MISSING A-150: not prepared')\n"
        "log.error('[train_net] training interrupted at iteration 3')\n")
    out = tmp_path / "entry"
    result = subprocess.run([sys.executable, "-c", run, "entry", "0", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "AHS_SEG_CONSOLE"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["[eval] before the run", "| mIoU | 1.0 |"]
    assert result.stderr.splitlines()[-2:] == ["WARNING: [eval] MISSING A-150: not prepared",
                                               "[train_net] training interrupted at iteration 3"]
    log = (out / "log.txt").read_text()
    for line in ("debug, for log.txt only", "| mIoU | 1.0 |", "WARNING: [eval] MISSING",
                 "ERROR: [train_net] training interrupted"):
        assert line in log, log

    # A worker started by an entry point: rank 0 on the terminal's streams, rank 1 in its file.
    for rank in (0, 1):
        out = tmp_path / f"worker{rank}"
        result = subprocess.run([sys.executable, "-c", run, "worker", str(rank), str(out)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "AHS_SEG_CONSOLE": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        if rank == 0:
            assert result.stdout.splitlines() == ["| mIoU | 1.0 |"]
            assert "WARNING: [eval] MISSING A-150" in result.stderr
        else:
            assert "mIoU" not in result.stdout and "MISSING" not in result.stderr + result.stdout
            assert "MISSING A-150" in (out / "log.txt.rank1").read_text()
