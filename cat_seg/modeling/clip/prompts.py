"""Prompt templates and the prompts built from class names (CAT-Seg's conventions).

* ``"single"``: the one template ``"A photo of a {} in the scene"``.
* ``"imagenet"``: OpenAI's 80 ImageNet templates, in the order CLIP's prompt-engineering notebook and
  CAT-Seg list them (open_clip ships the same list, ``OPENAI_IMAGENET_TEMPLATES``).

A class name ``"a, b"`` lists synonyms; prompts use the first one, ``"a"``. Prompts are tokenized
with OpenAI's BPE tokenizer (open_clip's ``SimpleTokenizer``, the same ids as CAT-Seg's copy of it).
"""
from functools import lru_cache
from typing import List, Sequence, Tuple

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
