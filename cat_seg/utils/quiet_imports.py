"""detectron2's and fvcore's modules, imported once with their import-time FutureWarning muted.

``fvcore.nn`` (focal losses) and ``detectron2.modeling.box_regression`` apply
``torch.jit.script`` when they are imported; torch >= 2.6 deprecates it and warns, so every
command printed two ``FutureWarning: torch.jit.script is deprecated`` lines about code this
project never runs. ``cat_seg`` imports this module before anything else of detectron2: the
warning is muted for those imports only (the filter is restored after them), and any other
code that scripts a function still gets it.
"""
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                            category=FutureWarning)
    import fvcore.nn  # noqa: F401
    import detectron2.modeling  # noqa: F401
