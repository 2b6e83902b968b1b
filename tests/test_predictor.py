"""cat_seg.Segmenter: every input kind, lists, threads with their own vocabularies, the text
cache, the evaluation's scores, a few classes at a time, and the README's three lines."""
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import cat_seg
from cat_seg import Segmenter
from cat_seg.data.dataset_mapper import SemanticDatasetMapper
from cat_seg.demo import images as demo_images
from cat_seg.inference import ScoreMaps
from cat_seg.predictor import SegmentationResult

# The README's example, line for line (the test runs this text).
README_EXAMPLE = """\
from cat_seg import Segmenter
seg = Segmenter.from_config("configs/synthetic/quickstart.yaml", "output/quickstart/model_final.pth", device="cpu")
result = seg("photo.jpg", ["sky", "grass", "lava"])
"""
NAMES = ["sky", "grass", "lava"]


def random_image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, write_tiny_config):
    """A tiny random model's config and checkpoint, a Segmenter of them and a PNG image."""
    root = tmp_path_factory.mktemp("predictor")
    config = write_tiny_config(root / "tiny.yaml")
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(demo_images.setup_cfg(config))
    torch.save({"model": model.state_dict(), "iteration": 0}, root / "model.pth")
    image = random_image(48, 80, seed=1)
    Image.fromarray(image).save(root / "image.png")
    segmenter = Segmenter.from_config(config, str(root / "model.pth"), device="cpu")
    return root, segmenter, image


def assert_same(result, expected):
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_array_equal(result.sigmoid_scores, expected.sigmoid_scores)
    assert result.class_names == expected.class_names


def test_every_input_kind_gives_the_same_answer(tiny):
    root, seg, image = tiny
    path = str(root / "image.png")
    reference = seg(path, NAMES)
    assert isinstance(reference, SegmentationResult) and cat_seg.Segmenter is Segmenter
    assert reference.labels.shape == (48, 80) and reference.labels.dtype == np.int64
    assert reference.sigmoid_scores.shape == (3, 48, 80)
    assert reference.sigmoid_scores.dtype == np.float32
    assert reference.class_names == NAMES and reference.seconds > 0
    assert set(np.unique(reference.labels)) <= {-1, 0, 1, 2}
    np.testing.assert_array_equal(seg(path, NAMES, min_score=0).labels,
                                  reference.sigmoid_scores.argmax(0))
    np.testing.assert_array_equal(reference.top_scores, reference.sigmoid_scores.max(0))
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    for kind in (root / "image.png", Image.open(path), image, tensor, tensor.float() / 255):
        assert_same(seg(kind, NAMES), reference)
    gray = image[..., 0]
    np.testing.assert_array_equal(seg(gray, NAMES).labels,
                                  seg(np.repeat(gray[..., None], 3, axis=2), NAMES).labels)


def test_a_list_gives_a_list_in_order(tiny):
    root, seg, image = tiny
    other = random_image(30, 20, seed=5)
    results = seg([str(root / "image.png"), other], NAMES)
    assert [r.labels.shape for r in results] == [(48, 80), (30, 20)]
    assert_same(results[0], seg(image, NAMES))
    assert_same(results[1], seg(other, NAMES))


@pytest.mark.parametrize("image, names, error, message", [
    (np.zeros((8, 8, 3), np.float32), NAMES, TypeError, "float32 array; numpy images must be uint8"),
    (np.zeros((8, 8, 4), np.uint8), NAMES, ValueError, r"shape \(8, 8, 4\).*alpha"),
    (torch.full((3, 8, 8), 200.0), NAMES, ValueError, r"\[200, 200\].*divide 0-255 values by 255"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), NAMES, ValueError, r"\(3, H, W\)"),
    ([1, 2], NAMES, TypeError, "cannot segment the int input"),
    ("no_such_image.png", NAMES, FileNotFoundError, "no_such_image.png does not exist"),
    (np.zeros((8, 8, 3), np.uint8), "sky, grass", TypeError, "not the string"),
    (np.zeros((8, 8, 3), np.uint8), [], ValueError, "empty"),
    (np.zeros((8, 8, 3), np.uint8), ["sky", "Sky"], ValueError, "names a class twice"),
    ([], NAMES, ValueError, "list of images is empty"),
])
def test_bad_inputs_are_named(tiny, image, names, error, message):
    _, seg, _ = tiny
    with pytest.raises(error, match=message):
        seg(image, names)


def test_unknown_mode_or_threshold_is_named(tiny):
    _, seg, image = tiny
    with pytest.raises(ValueError, match=r"mode='sliding_window'; use one of \['sliding', 'whole'\]"):
        seg(image, NAMES, mode="sliding_window")
    with pytest.raises(ValueError, match=r"min_score=1.5: a sigmoid score threshold in \[0, 1\]"):
        seg(image, NAMES, min_score=1.5)


@pytest.mark.parametrize("bias, present", [(-20.0, []), (20.0, ["lava"])])
def test_one_class_is_present_only_where_it_scores(tiny, bias, present):
    """A one-class vocabulary: the class labels no pixel when its score stays below min_score
    (the last layer's bias -20: scores ~2e-9), every pixel when above (+20)."""
    _, seg, image = tiny
    layer = seg.model.sem_seg_head.decoder.predictor
    saved = layer.bias.detach().clone()
    try:
        with torch.no_grad():
            layer.bias.fill_(bias)
        result = seg(image, ["lava"])
    finally:
        with torch.no_grad():
            layer.bias.copy_(saved)
    assert result.present == present
    if present:
        assert (result.labels == 0).all() and result.fractions() == {0: 1.0}
        assert result.unlabelled_fraction == 0.0
    else:
        assert (result.labels == -1).all() and result.fractions() == {}
        assert result.unlabelled_fraction == 1.0 and result.top_scores.max() < 1e-6


def test_threads_with_their_own_vocabularies_need_no_lock(tiny):
    """Four threads call one Segmenter at the same moment, each with another vocabulary (the
    barrier releases them together, twice): each gets what a call alone gives."""
    _, seg, image = tiny
    vocabularies = [["sky", "grass"], ["lava", "ice", "gravel"], ["carpet"],
                    ["balloon", "kite", "road", "tree"]]
    expected = [seg(image, names) for names in vocabularies]
    barrier = threading.Barrier(len(vocabularies))
    answers, errors = {}, []

    def work(i):
        try:
            for round_ in range(2):
                barrier.wait(timeout=60)
                answers[i, round_] = seg(image, vocabularies[i])
        except Exception as error:  # noqa: BLE001  (reported below, with its thread)
            errors.append((i, error))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(vocabularies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(answers) == 2 * len(vocabularies)
    for (i, _), answer in answers.items():
        assert answer.class_names == vocabularies[i]
        assert_same(answer, expected[i])


def test_predictor_gives_the_evaluation_scores(tiny):
    """The default (sliding window, test protocol) is what the evaluation computes: its mapper
    reads the file, the model's forward (as inference_on_dataset calls it) scores it."""
    root, seg, _ = tiny
    path = str(root / "image.png")
    assert seg.cfg.TEST.SLIDING_WINDOW and list(seg.cfg.MODEL.SEM_SEG_HEAD.POOLING_SIZES) == [1, 1]
    record = SemanticDatasetMapper(seg.cfg, is_train=False)({"file_name": path})
    seg.model.set_vocabulary(NAMES)
    try:
        with torch.no_grad():
            evaluated = seg.model([record])[0]["sem_seg"].numpy()
    finally:
        seg.model.set_vocabulary(None)
    result = seg(path, NAMES, min_score=0)
    np.testing.assert_array_equal(result.sigmoid_scores, evaluated)
    np.testing.assert_array_equal(result.labels, evaluated.argmax(0))
    # The default keeps the argmax where a class is present (score >= min_score), else -1.
    default = seg(path, NAMES)
    np.testing.assert_array_equal(default.sigmoid_scores, evaluated)
    np.testing.assert_array_equal(default.labels, np.where(
        evaluated.max(0) >= cat_seg.predictor.DEFAULT_MIN_SCORE, evaluated.argmax(0), -1))
    whole = seg(path, NAMES, mode="whole")
    assert whole.sigmoid_scores.shape == evaluated.shape
    assert not np.array_equal(whole.sigmoid_scores, evaluated)  # another protocol


def test_labels_and_scores_a_few_classes_at_a_time_are_the_whole(tiny):
    """One class per chunk gives the label map and scores of all classes at once."""
    root, seg, image = tiny
    names = ["sky", "grass", "lava", "ice", "gravel", "carpet", "kite"]
    small = Segmenter(seg.model, seg.cfg, chunk_bytes=1)
    for mode in ("sliding", "whole"):
        whole = seg(image, names, mode=mode, min_score=0)
        chunked = small(image, names, mode=mode, min_score=0)
        assert chunked._score_maps.classes_per_chunk(1) == 1
        assert whole._score_maps.classes_per_chunk(seg.chunk_bytes) == len(names)
        assert_same(chunked, whole)
        np.testing.assert_array_equal(chunked.labels, whole.sigmoid_scores.argmax(0))
        median = float(np.median(whole.top_scores))  # half the pixels have no class present
        thresholded = small(image, names, mode=mode, min_score=median)
        np.testing.assert_array_equal(thresholded.labels, np.where(
            whole.top_scores >= median, whole.labels, -1))
        assert 0 < thresholded.unlabelled_fraction < 1
        assert sum(thresholded.fractions().values()) == pytest.approx(
            1 - thresholded.unlabelled_fraction)
        for index, name in enumerate(names):
            np.testing.assert_array_equal(chunked.class_scores(name), whole.sigmoid_scores[index])


def test_chunked_argmax_keeps_the_first_class_on_ties():
    scores = torch.tensor([[[0.2, 0.7]], [[0.7, 0.7]], [[0.7, 0.1]]])  # (3 classes, 1, 2)
    maps = ScoreMaps(3, (1, 2), lambda classes: scores[classes], bytes_per_class=1)
    labels, top = maps.best(chunk_bytes=1)
    np.testing.assert_array_equal(labels.numpy(), scores.argmax(0).numpy())  # [[1, 0]]
    np.testing.assert_array_equal(top.numpy(), np.float32([[0.7, 0.7]]))


def test_long_vocabularies_are_encoded_in_chunks_with_the_same_embeddings(tiny, monkeypatch):
    _, seg, _ = tiny
    names = tuple(f"thing {i}" for i in range(7))
    whole = seg.text_embeddings(names)
    seg._text_cache.clear()
    seg.model.backbone.clear_caches()
    monkeypatch.setattr(cat_seg.predictor, "TEXT_CHUNK", 3)
    torch.testing.assert_close(seg.text_embeddings(names), whole, rtol=1e-5, atol=1e-6)


def test_text_embeddings_are_cached_per_vocabulary_until_the_weights_change(tiny, monkeypatch):
    _, seg, image = tiny
    backbone = seg.model.backbone
    encoded = []
    original = type(backbone).encode_text

    def counting(self, names):
        encoded.append(tuple(names))
        return original(self, names)

    monkeypatch.setattr(type(backbone), "encode_text", counting)
    first = seg.text_embeddings(("moss", "sand"))
    assert seg.text_embeddings(("moss", "sand")) is first and encoded == [("moss", "sand")]
    seg(image, ["moss", "sand"])
    assert encoded == [("moss", "sand")]  # the call used the cached embeddings
    # New weights (an in-place update, as load_state_dict makes): encoded again, and different.
    projection = backbone.clip.text_projection
    saved = projection.detach().clone()
    try:
        with torch.no_grad():
            projection.mul_(-1)
        second = seg.text_embeddings(("moss", "sand"))
        assert encoded == [("moss", "sand")] * 2
        torch.testing.assert_close(second, -first)
    finally:
        with torch.no_grad():
            projection.copy_(saved)
    # Bounded: the least recently used vocabulary goes first.
    for i in range(cat_seg.predictor.TEXT_CACHE_SIZE + 1):
        seg.text_embeddings((f"class {i}",))
    assert len(seg._text_cache) == cat_seg.predictor.TEXT_CACHE_SIZE
    assert ("class 0",) not in seg._text_cache


def test_readme_example_runs_from_any_folder(tmp_path, monkeypatch):
    """The README's three lines, as written there, in a folder outside the repository that holds
    a photo and output/quickstart/model_final.pth (the quick-start model's layout; random head
    weights here: the test checks the API, not the accuracy)."""
    from detectron2.modeling import build_model

    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "README.md")).read()
    assert README_EXAMPLE in readme  # the text run here is the README's, line for line
    cfg = demo_images.setup_cfg("configs/synthetic/quickstart.yaml", device="cpu")
    torch.manual_seed(0)
    weights = tmp_path / "output" / "quickstart" / "model_final.pth"
    weights.parent.mkdir(parents=True)
    torch.save({"model": build_model(cfg).state_dict(), "iteration": 0}, weights)
    Image.fromarray(random_image(60, 90, seed=3)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(README_EXAMPLE, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.labels.shape == (60, 90) and result.class_names == ["sky", "grass", "lava"]
    assert result.sigmoid_scores.shape == (3, 60, 90)
    assert os.path.samefile(namespace["seg"].cfg.MODEL.WEIGHTS, weights)


def test_long_vocabularies_send_the_views_one_at_a_time(tiny, monkeypatch):
    """From LARGE_VOCABULARY names on, the sliding window's views go through the model one at a
    time (the head's memory grows with views x names): the same scores up to float rounding."""
    _, seg, image = tiny
    names = ["sky", "grass", "lava", "ice"]
    batched = seg(image, names, min_score=0)
    views = []
    original = type(seg.model).segment

    def counting(self, clip_images, text):
        views.append(len(clip_images))
        return original(self, clip_images, text)

    monkeypatch.setattr(type(seg.model), "segment", counting)
    monkeypatch.setattr(cat_seg.predictor, "LARGE_VOCABULARY", 4)
    one_by_one = seg(image, names, min_score=0)
    assert views == [1] * 5  # 4 crops and the global view, one per pass
    np.testing.assert_allclose(one_by_one.sigmoid_scores, batched.sigmoid_scores, atol=1e-5)


def test_weights_by_url_go_through_the_download_cache(tiny, monkeypatch):
    """A URL or hf:// name is fetched (and an official CAT-Seg checkpoint converted) by
    fetch_ahs_weights, whose own tests serve files from 127.0.0.1; here it is stood in for."""
    root, _, image = tiny
    import cat_seg.engine.catseg_checkpoint as catseg_checkpoint

    asked = []
    monkeypatch.setattr(catseg_checkpoint, "fetch_ahs_weights",
                        lambda source, sha256=None: asked.append((source, sha256))
                        or str(root / "model.pth"))
    seg = Segmenter.from_config(str(root / "tiny.yaml"), "hf://someone/ahs/model.pth",
                                device="cpu", sha256="ab" * 32)
    assert asked == [("hf://someone/ahs/model.pth", "ab" * 32)]
    assert seg.cfg.MODEL.WEIGHTS == str(root / "model.pth")
    assert seg(image, NAMES).labels.shape == image.shape[:2]
