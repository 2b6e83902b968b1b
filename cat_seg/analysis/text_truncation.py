"""What truncating the text encoder's context buys: the same embeddings from fewer positions.

CLIP's text encoder has 77 context positions, but a prompt such as "A photo of a sky in the
scene" ends after about a dozen; :func:`cat_seg.modeling.clip.encoders.encode_text_tokens` runs
only up to the longest prompt's end-of-text token. Causal attention means the positions after it
never influence the end-of-text token, so the result is the same (tests/test_clip_real_shapes.py
checks that). How much faster it is depends on the machine and on what else runs on it, so it is
measured here, not asserted in a test: tools/bench_text_truncation.py is the command line.
"""
import statistics
import time
from typing import Dict, Sequence

import torch

from ..modeling.clip.encoders import encode_text_tokens
from ..modeling.clip.oft import TEXT
from ..modeling.clip.prompts import build_prompts

__all__ = ["measure_text_truncation"]


def measure_text_truncation(backbone, names: Sequence[str], *, repeats: int = 3) -> Dict[str, float]:
    """Encode the prompts of ``names`` with and without truncation, ``repeats`` times each.

    ``backbone``: a :class:`cat_seg.modeling.clip.CLIPBackbone` (its prompt templates and
    adapters are used as in the model). Returns ``prompts``, ``positions`` (truncated length),
    ``context_length``, ``max_abs_diff`` between the two (N, D) embeddings, the median wall-clock
    ``seconds_full`` / ``seconds_truncated`` and their ratio ``speedup``.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    tokens = backbone.tokenizer(build_prompts(list(names), backbone.prompt_templates))
    seconds = {True: [], False: []}
    embeddings = {}
    with torch.no_grad():
        weights = backbone._layer_weights(TEXT)
        for _ in range(repeats):
            for truncate in (False, True):  # alternate, so a load change hits both alike
                start = time.perf_counter()
                embeddings[truncate] = encode_text_tokens(backbone.clip, tokens, weights,
                                                          truncate=truncate)
                seconds[truncate].append(time.perf_counter() - start)
    full, truncated = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "prompts": int(tokens.shape[0]),
        "positions": int(tokens.argmax(-1).max()) + 1,
        "context_length": int(tokens.shape[1]),
        "max_abs_diff": float((embeddings[True] - embeddings[False]).abs().max()),
        "seconds_full": full,
        "seconds_truncated": truncated,
        "speedup": full / truncated if truncated > 0 else float("nan"),
    }
