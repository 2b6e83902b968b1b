"""Prompts, exact text-transformer truncation, and the per-vocabulary text-embedding cache."""
import pytest
import torch
import torch.nn.functional as F

from cat_seg.modeling.clip import encoders
from cat_seg.modeling.clip.encoders import encode_text_tokens
from cat_seg.modeling.clip.oft import TEXT
from cat_seg.modeling.clip.prompts import build_prompts, first_synonym, prompt_templates

NAMES = ["person", "traffic light", "dining table, table", "sky", "potted plant"]


def test_prompt_templates_and_first_synonym():
    assert prompt_templates("single") == ("A photo of a {} in the scene",)
    imagenet = prompt_templates("imagenet")
    assert len(imagenet) == 80 and len(set(imagenet)) == 80
    assert imagenet[0] == "a bad photo of a {}." and imagenet[-1] == "a tattoo of the {}."
    assert first_synonym("dining table, table") == "dining table" and first_synonym("bed ") == "bed"
    assert build_prompts(["a, b", "c"], ("x {}", "y {}")) == ["x a", "y a", "x c", "y c"]
    with pytest.raises(ValueError, match="at least one"):
        build_prompts([], ("{}",))
    with pytest.raises(TypeError, match="list of strings"):
        build_prompts("cat", ("{}",))


def test_encode_text_is_normalised_per_class_and_template_in_order(tiny_backbone):
    backbone = tiny_backbone(prompt_ensemble="imagenet").eval()
    with torch.no_grad():
        text = backbone.encode_text(NAMES[:2])
        assert text.shape == (2, 80, 64)
        torch.testing.assert_close(text.norm(dim=-1), torch.ones(2, 80))
        single = backbone.encode_text(["traffic light"])
        tokens = backbone.tokenizer(["a photo of the cool traffic light."])
        expected = encode_text_tokens(backbone.clip, tokens, backbone._layer_weights(TEXT))
    torch.testing.assert_close(text[1, 19], F.normalize(expected, dim=-1)[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(single[0], text[1], atol=1e-6, rtol=0)


def test_truncated_text_transformer_equals_the_full_context_run(tiny_backbone, perturb_adapter):
    backbone = tiny_backbone()
    perturb_adapter(backbone)
    tokens = backbone.tokenizer(build_prompts(NAMES[1:3], prompt_templates("imagenet")))
    assert int(tokens.argmax(-1).max()) + 1 < 20  # the truncated run is much shorter than 77
    with torch.no_grad():
        weights = backbone._layer_weights(TEXT)
        truncated = encode_text_tokens(backbone.clip, tokens, weights)
        full = encode_text_tokens(backbone.clip, tokens, weights, truncate=False)
    assert (truncated - full).abs().max() <= 1e-5


def test_chunked_text_encoding_equals_one_batch(monkeypatch, tiny_backbone):
    backbone = tiny_backbone().eval()
    with torch.no_grad():
        whole = backbone.encode_text(NAMES)
        backbone.clear_caches()
        monkeypatch.setattr(encoders, "TEXT_CHUNK", 2)
        chunked = backbone.encode_text(NAMES)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_evaluation_cache_per_vocabulary_and_bypass_state(perturb_adapter, tiny_backbone):
    backbone = tiny_backbone().eval()
    perturb_adapter(backbone)
    with torch.no_grad():
        first = backbone.encode_text(NAMES)
        assert backbone.encode_text(NAMES) is first
        other = backbone.encode_text(NAMES[:2])
        with backbone.adapters_bypassed():
            teacher = backbone.encode_text(NAMES)
            assert backbone.encode_text(NAMES) is teacher
        assert backbone.encode_text(NAMES) is first
    assert other.shape == (2, 1, 64) and (teacher - first).abs().max() > 1e-4


def test_cache_is_dropped_by_weight_changes_and_mode_switches(perturb_adapter, tiny_backbone):
    backbone = tiny_backbone().eval()
    with torch.no_grad():
        first = backbone.encode_text(NAMES)
        perturb_adapter(backbone)  # in-place update: version counters move
        changed = backbone.encode_text(NAMES)
        assert changed is not first and (changed - first).abs().max() > 1e-4
        backbone.train()
        backbone.eval()
        switched = backbone.encode_text(NAMES)
    assert switched is not changed
    torch.testing.assert_close(switched, changed, atol=0, rtol=0)


def test_training_with_gradients_never_reuses_embeddings(tiny_backbone):
    backbone = tiny_backbone().train()
    first, second = backbone.encode_text(NAMES), backbone.encode_text(NAMES)
    assert first is not second and first.requires_grad and second.grad_fn is not None


def test_bypassed_text_is_graph_free_and_cached_even_while_training(tiny_backbone):
    backbone = tiny_backbone().train()  # oft_both: the pretrained weights are frozen
    with backbone.adapters_bypassed():
        teacher = backbone.encode_text(NAMES)
        assert not teacher.requires_grad and backbone.encode_text(NAMES) is teacher


def test_names_longer_than_the_context_are_warned_once_naming_the_dropped_tokens(caplog,
                                                                                 tiny_backbone):
    """Two long names differing only at the end get identical embeddings (the tokenizer keeps
    76 tokens + end): the warning says so, once per name, with the count of dropped tokens."""
    from cat_seg.modeling.clip import prompts

    backbone = tiny_backbone().eval()
    stem = " ".join(["very"] * 80) + " large"
    names = [stem + " red house", stem + " blue boat", "sky"]
    prompts._WARNED_TRUNCATED.clear()
    with caplog.at_level("WARNING"), torch.no_grad():
        text = backbone.encode_text(names)
        backbone.clear_caches()
        backbone._token_cache.clear()
        backbone.encode_text(names)  # a second encoding: no second warning
    torch.testing.assert_close(text[0], text[1])  # what the warning is about
    warnings = [r.getMessage() for r in caplog.records if "too long" in r.getMessage()]
    assert len(warnings) == 2, warnings
    # "A photo of a" (4) + 80 + "large" + 2 words + "in the scene" (3) + start/end = 92 tokens.
    assert "red house" in warnings[0] and "the last 15 token(s) are dropped" in warnings[0]
    assert "77-token context" in warnings[0] and "blue boat" in warnings[1]
    assert not any("'sky'" in w for w in warnings)
