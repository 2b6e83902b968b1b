"""Checks on paths that entry points run before any work (no model is built for nothing)."""
import os
import tempfile


def check_output_dir(path: str, what: str = "output folder") -> str:
    """Create ``path`` (and its parents) and make sure files can be written in it.

    Raises ``OSError`` with one line naming the folder, the reason (a parent is a file, no
    permission, read-only disk...) and the fix. Returns ``path``.
    """
    if not path:
        raise OSError(f"the {what} is empty; give a folder to write into")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OSError(f"the {what} {path} is a file, not a folder; choose another path or "
                      "remove that file")
    parent = path
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        raise OSError(f"the {what} {path} cannot be created: {parent} is a file, not a folder; "
                      "choose another path")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OSError(f"the {what} {path} cannot be created or written ({reason}); choose a "
                      "folder you can write to (check its permissions and free space)") from None
    return path
