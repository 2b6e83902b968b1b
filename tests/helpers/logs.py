"""Reading what the library logs, wherever the ``cat_seg`` logger's records go.

detectron2's ``setup_logger(name="cat_seg")`` (run in-process by a training or evaluation test
earlier in the session) stops the logger's propagation to the root, where pytest's ``caplog``
listens; :func:`cat_seg_logs` attaches caplog's handler to the ``cat_seg`` logger itself.
"""
import logging
from contextlib import contextmanager


@contextmanager
def cat_seg_logs(caplog, level=logging.INFO):
    """Inside, ``cat_seg``'s records at ``level`` and above reach ``caplog`` (``caplog.text``)."""
    logger = logging.getLogger("cat_seg")
    previous = logger.level
    logger.setLevel(level)
    caplog.handler.setLevel(level)
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(previous)
