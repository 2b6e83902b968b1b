"""Prompt templates and the prompts built from class names (CAT-Seg's conventions).

* ``"single"``: the one template ``"A photo of a {} in the scene"``.
* ``"imagenet"``: OpenAI's 80 ImageNet templates, in the order CLIP's prompt-engineering notebook and
  CAT-Seg list them (open_clip ships the same list, ``OPENAI_IMAGENET_TEMPLATES``).

A class name ``"a, b"`` lists synonyms; prompts use the first one, ``"a"``. Prompts are tokenized
with OpenAI's BPE tokenizer (open_clip's ``SimpleTokenizer``, the same ids as CAT-Seg's copy of it).
"""
import logging
from functools import lru_cache
from typing import Dict, List, Sequence, Set, Tuple

from open_clip.tokenizer import SimpleTokenizer
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

SINGLE_TEMPLATE = "A photo of a {} in the scene"
PROMPT_ENSEMBLES = ("single", "imagenet")


def prompt_templates(ensemble: str) -> Tuple[str, ...]:
    """The templates (with one ``{}``) of ``MODEL.SEM_SEG_HEAD.PROMPT_ENSEMBLE_TYPE``."""
    if ensemble == "single":
        return (SINGLE_TEMPLATE,)
    if ensemble == "imagenet":
        return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)
    raise ValueError(
        f"Unknown prompt ensemble {ensemble!r} (MODEL.SEM_SEG_HEAD.PROMPT_ENSEMBLE_TYPE); "
        f"choose one of {list(PROMPT_ENSEMBLES)}."
    )


def first_synonym(class_name: str) -> str:
    """``"a, b"`` -> ``"a"``; surrounding blanks removed."""
    return class_name.split(",")[0].strip()


def build_prompts(class_names: Sequence[str], templates: Sequence[str]) -> List[str]:
    """All prompts, class-major.

    ``prompts[t * P + p] = templates[p].format(first_synonym(class_names[t]))``.
    """
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
        raise TypeError(f"class names must be a list of strings, got {type(class_names).__name__}")
    if len(class_names) == 0:
        raise ValueError("encode_text needs at least one class name")
    empty = [i for i, name in enumerate(class_names) if not first_synonym(name)]
    if empty:
        raise ValueError(f"class names at positions {empty[:10]} are empty")
    return [template.format(first_synonym(name)) for name in class_names for template in templates]


@lru_cache(maxsize=None)
def clip_tokenizer(context_length: int) -> SimpleTokenizer:
    """OpenAI's BPE tokenizer padding/truncating to ``context_length``; built once per length
    (reading its 49,408-token vocabulary takes a noticeable fraction of a second)."""
    return SimpleTokenizer(context_length=context_length)


# Class names already warned about (once per name and context length, per process).
_WARNED_TRUNCATED: Set[Tuple[str, int]] = set()


def truncated_names(class_names: Sequence[str], prompts: Sequence[str],
                    tokenizer: SimpleTokenizer) -> Dict[str, Tuple[int, str]]:
    """``{class name: (tokens dropped, longest prompt)}`` for the names whose prompt (with the
    start and end tokens) exceeds the tokenizer's context; ``prompts`` class-major as
    :func:`build_prompts` makes them. The tokenizer keeps the first ``context - 1`` tokens and
    the end token: the rest of the name is never seen by the text encoder."""
    context = tokenizer.context_length
    per_class = len(prompts) // max(len(class_names), 1)
    found: Dict[str, Tuple[int, str]] = {}
    for t, name in enumerate(class_names):
        for prompt in prompts[t * per_class:(t + 1) * per_class]:
            dropped = len(tokenizer.encode(prompt)) + 2 - context
            if dropped > 0 and dropped > found.get(name, (0, ""))[0]:
                found[name] = (dropped, prompt)
    return found


def warn_truncated(class_names: Sequence[str], prompts: Sequence[str],
                   tokenizer: SimpleTokenizer) -> Dict[str, Tuple[int, str]]:
    """Log a warning, once per class name, for each name cut by the context (see
    :func:`truncated_names`); returns all the cut names."""
    found = truncated_names(class_names, prompts, tokenizer)
    for name, (dropped, prompt) in found.items():
        key = (name, tokenizer.context_length)
        if key in _WARNED_TRUNCATED:
            continue
        _WARNED_TRUNCATED.add(key)
        logging.getLogger(__name__).warning(
            "class name %r is too long for CLIP's %d-token context: in the prompt %r the last %d "
            "token(s) are dropped, so the text encoder never sees the end of the name (two names "
            "that differ only there get identical embeddings). Shorten the name, or put the "
            "distinguishing words first.", name, tokenizer.context_length,
            prompt if len(prompt) <= 120 else prompt[:117] + "...", dropped)
    return found
