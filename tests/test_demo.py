"""tools/demo.py: vocabulary and input checks, the pictures it writes, and a run of the tiny model."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import demo  # noqa: E402
from cat_seg.demo import images as demo_images

import cat_seg  # noqa: E402,F401  (registers the model, head and datasets)
from cat_seg.data.label_io import read_label  # noqa: E402
from cat_seg.inference import ScoreMaps  # noqa: E402
from cat_seg.inference.image_inputs import RGBImage  # noqa: E402
from cat_seg.predictor import SegmentationResult  # noqa: E402
from cat_seg.utils.visualization import draw_legend, palette  # noqa: E402


# ---------------------------------------------------------------------------------- vocabulary

def test_vocabulary_from_text_and_json(tmp_path):
    assert demo_images.parse_vocabulary("sky, tree ,  person") == ["sky", "tree", "person"]
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(["sky", "tree, bush", "traffic  light"]))
    assert demo_images.parse_vocabulary(file=str(path)) == ["sky", "tree, bush", "traffic light"]
    shipped = os.path.join(os.path.dirname(demo.__file__), "..", "cat_seg", "data", "class_names",
                           "ade150.json")
    assert len(demo_images.parse_vocabulary(file=shipped)) == 150


@pytest.mark.parametrize("text, message", [
    ("sky,,tree", r"empty class names at position\(s\) \[2\]"),
    ("sky, tree,", r"empty class names at position\(s\) \[3\]"),
    (" , ", "empty class names"),
    ("sky, tree, Sky", r"names a class twice: 'Sky' \(positions 1 and 3\)"),
])
def test_malformed_vocabulary_text_is_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        demo_images.parse_vocabulary(text)


def test_malformed_vocabulary_files_are_rejected(tmp_path):
    cases = {"dict.json": '{"a": 1}', "numbers.json": '["sky", 3]', "broken.json": '["sky",',
             "empty.json": "[]", "twice.json": '["tree, bush", "Tree,bush"]'}
    messages = {"dict.json": "JSON list of strings", "numbers.json": "non-string",
                "broken.json": "not valid JSON", "empty.json": "empty",
                "twice.json": "twice"}
    for name, content in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=messages[name]):
            demo_images.parse_vocabulary(file=str(tmp_path / name))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        demo_images.parse_vocabulary(file=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="exactly one"):
        demo_images.parse_vocabulary("sky", str(tmp_path / "dict.json"))


# ---------------------------------------------------------------------------------- inputs

def save_image(path, height=40, width=56, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_inputs_from_files_folders_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = save_image(tmp_path / "a" / "x.png")
    two = save_image(tmp_path / "a" / "y.jpg")
    three = save_image(tmp_path / "b" / "x.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    found = demo_images.find_images([str(tmp_path / "a"), str(tmp_path / "*" / "x.png"), one])
    assert found == [one, two, three]  # folder (images only), then the glob, each file once
    assert demo_images.output_names(found) == ["x", "y", "x_2"]
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        demo_images.find_images([str(tmp_path / "nothing.png")])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        demo_images.find_images([str(tmp_path / "*.gif")])


def test_unreadable_images_are_named_before_any_model_work(tmp_path):
    good = save_image(tmp_path / "good.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match="bad.jpg") as error:
        demo_images.check_images([good, str(bad)])
    assert "good.png" not in str(error.value)


# ---------------------------------------------------------------------------------- outputs

def test_label_maps_are_lossless_8_or_16_bit(tmp_path):
    label = np.array([[0, 1], [254, 2]])
    assert demo_images.save_label_map(label, 255, str(tmp_path / "small.png")) == np.uint8
    assert Image.open(tmp_path / "small.png").mode == "L"
    np.testing.assert_array_equal(read_label(tmp_path / "small.png"), label)
    big = np.array([[0, 300], [846, 255]])
    assert demo_images.save_label_map(big, 847, str(tmp_path / "big.png")) == np.uint16
    assert Image.open(tmp_path / "big.png").mode.startswith("I;16")
    np.testing.assert_array_equal(read_label(tmp_path / "big.png"), big)


def legend_colors(overlay: np.ndarray, image_height: int) -> set:
    """Colours of the legend strip below the image rows."""
    return {tuple(c) for c in overlay[image_height:].reshape(-1, 3)}


def result_of(scores: torch.Tensor, names, image) -> SegmentationResult:
    """A predictor result whose sigmoid scores are ``scores`` (T, H, W)."""
    maps = ScoreMaps(len(names), scores.shape[1:], lambda classes: scores[classes],
                     bytes_per_class=scores[0].numel() * 4)
    labels, top = maps.best()
    return SegmentationResult(labels.numpy(), top.numpy(), list(names), maps, 0.0,
                              RGBImage(image, "image"))


def test_outputs_show_the_predicted_classes_and_their_legend(tmp_path):
    names = ["sky", "tree, bush", "person", "road"]
    height, width = 30, 48
    scores = torch.zeros(4, height, width)
    scores[0, :10] = 0.9   # sky on top
    scores[2, 10:] = 0.8   # person below
    scores[3, 10:, :8] = 0.95  # road at the bottom left; "tree" is never predicted
    image = np.full((height, width, 3), 100, dtype=np.uint8)
    record = demo_images.write_outputs(image, result_of(scores, names, image), str(tmp_path), "img",
                                       probabilities=True)

    assert record["classes"] == [0, 2, 3]
    assert sum(record["fractions"].values()) == pytest.approx(1.0)
    overlay = np.asarray(Image.open(record["overlay"]).convert("RGB"))
    legend = draw_legend([0, 2, 3], names, palette(4), width)
    assert overlay.shape == (height + legend.height, width, 3)
    colors = palette(len(names))
    shown = legend_colors(overlay, height)
    assert {tuple(colors[c]) for c in (0, 2, 3)} <= shown and tuple(colors[1]) not in shown
    np.testing.assert_array_equal(np.asarray(Image.open(record["labels"])),
                                  scores.argmax(0).numpy())
    assert [os.path.basename(p) for p in record["probabilities"]] == \
        ["0_sky.png", "1_tree.png", "2_person.png", "3_road.png"]
    sky = np.asarray(Image.open(record["probabilities"][0]))
    assert sky.shape == (height, width) and sky[0, 0] == round(0.9 * 255) and sky[-1, -1] == 0


# ---------------------------------------------------------------------------------- the model

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, write_tiny_config):
    """A tiny model's checkpoint, its config and two input images of different sizes."""
    root = tmp_path_factory.mktemp("demo")
    config = write_tiny_config(root / "tiny.yaml")
    cfg = demo_images.setup_cfg(config)
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(cfg)
    torch.save({"model": model.state_dict(), "iteration": 0}, root / "model.pth")
    images = root / "images"
    images.mkdir()
    save_image(images / "wide.png", 48, 80, seed=1)
    save_image(images / "tall.jpg", 72, 40, seed=2)
    return root, config


def test_demo_cli_writes_every_picture(tiny_run, capsys):
    root, config = tiny_run
    out = root / "out"
    results = demo.main([str(root / "images"), "--vocabulary", "sky, grass, road",
                         "--config-file", config, "--weights", str(root / "model.pth"),
                         "--output", str(out), "--probabilities", "--device", "cpu"])
    assert [os.path.basename(r["image"]) for r in results] == ["tall.jpg", "wide.png"]
    assert json.loads((out / "vocabulary.json").read_text()) == ["sky", "grass", "road"]
    colors = palette(3)
    for result, (height, width) in zip(results, [(72, 40), (48, 80)]):
        labels = np.asarray(Image.open(result["labels"]))
        assert labels.shape == (height, width) and labels.dtype == np.uint8
        # 255: no class reaches --min-score there (unlabelled), not a class.
        assert sorted(set(np.unique(labels).tolist()) - {255}) == result["classes"]
        assert result["unlabelled"] == pytest.approx(np.mean(labels == 255))
        overlay = np.asarray(Image.open(result["overlay"]).convert("RGB"))
        assert overlay.shape[1] == width and overlay.shape[0] > height  # image + legend
        shown = legend_colors(overlay, height)
        for c in range(3):  # a class's swatch is in the legend exactly when it was predicted
            assert (tuple(colors[c]) in shown) == (c in result["classes"])
        assert len(result["probabilities"]) == 3
        for path in result["probabilities"]:
            assert Image.open(path).size == (width, height)
    assert "2 image(s) written" in capsys.readouterr().out


def test_demo_fails_clearly_on_missing_or_foreign_weights(tiny_run, tmp_path):
    root, config = tiny_run
    args = [str(root / "images"), "--vocabulary", "sky", "--config-file", config,
            "--output", str(tmp_path)]
    with pytest.raises(FileNotFoundError, match="nope.pth does not exist"):
        demo.main(args + ["--weights", str(tmp_path / "nope.pth")])
    with pytest.raises(ValueError, match="no weights given"):
        demo.main(args)
    other = tmp_path / "other.yaml"
    other.write_text(open(config).read().replace("NUM_LAYERS: 1", "NUM_LAYERS: 2"))
    with pytest.raises(ValueError, match="does not fit the model.*missing"):
        demo.main(args[:4] + [str(other), "--weights", str(root / "model.pth"),
                              "--output", str(tmp_path)])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        demo.main(args + ["--weights", str(garbage)])


# ---------------------------------------------------------------------------------- present

@pytest.fixture(scope="module")
def one_class_models(tiny_run):
    """Checkpoints of the tiny model whose last layer says "absent" (bias -20: every score
    ~2e-9) or "present" (bias +20) whatever the class name: a one-class vocabulary's two cases."""
    root, config = tiny_run
    state = torch.load(root / "model.pth", weights_only=True)["model"]
    key = "sem_seg_head.decoder.predictor.bias"
    paths = {}
    for case, bias in (("absent", -20.0), ("present", 20.0)):
        changed = dict(state, **{key: torch.full_like(state[key], bias)})
        paths[case] = str(root / f"{case}.pth")
        torch.save({"model": changed, "iteration": 0}, paths[case])
    return paths


def test_one_absent_class_is_not_reported_present(tiny_run, one_class_models, tmp_path, capsys):
    """A one-class vocabulary whose class scores far below --min-score: no pixel is given to
    it (label 255 = unlabelled), the legend is empty, and the summary says so instead of
    "lava 100%" (issue 28); --min-score 0 restores "the best class everywhere"."""
    root, config = tiny_run
    args = [str(root / "images" / "wide.png"), "--vocabulary", "lava", "--config-file", config,
            "--output", str(tmp_path / "out"), "--device", "cpu"]
    result, = demo.main(args + ["--weights", one_class_models["absent"]])
    printed = capsys.readouterr().out
    assert "no class present (no pixel scores 0.1 or more for any of the 1 names" in printed
    assert "lava" not in printed.split("->")[1]
    assert result["fractions"] == {} and result["classes"] == [] and result["unlabelled"] == 1.0
    assert (np.asarray(Image.open(result["labels"])) == 255).all()
    overlay = np.asarray(Image.open(result["overlay"]).convert("RGB"))
    assert tuple(palette(1)[0]) not in legend_colors(overlay, 48)

    result, = demo.main(args + ["--weights", one_class_models["absent"], "--min-score", "0"])
    assert result["fractions"] == {0: 1.0}


def test_one_present_class_covers_the_image(tiny_run, one_class_models, tmp_path, capsys):
    root, config = tiny_run
    result, = demo.main([str(root / "images" / "wide.png"), "--vocabulary", "lava",
                         "--config-file", config, "--output", str(tmp_path), "--device", "cpu",
                         "--weights", one_class_models["present"]])
    assert result["fractions"] == {0: 1.0} and result["unlabelled"] == 0.0
    assert (np.asarray(Image.open(result["labels"])) == 0).all()
    assert ": lava 100%" in capsys.readouterr().out


def test_max_side_downscales_with_a_note(tiny_run, tmp_path, capsys):
    """--max-side (the web demo's option and default) shrinks a larger image before any work,
    says so, and the pictures have the smaller size; 0 keeps the image's size."""
    root, config = tiny_run
    args = [str(root / "images" / "wide.png"), "--vocabulary", "sky, road", "--config-file",
            config, "--weights", str(root / "model.pth"), "--device", "cpu"]
    result, = demo.main(args + ["--output", str(tmp_path / "small"), "--max-side", "40"])
    assert np.asarray(Image.open(result["labels"])).shape == (24, 40)
    captured = capsys.readouterr()
    assert "The image is 80×48 px; it was downscaled to 40×24 (--max-side 40)" in \
        captured.out + captured.err
    result, = demo.main(args + ["--output", str(tmp_path / "full"), "--max-side", "0"])
    assert np.asarray(Image.open(result["labels"])).shape == (48, 80)
    assert "downscaled" not in capsys.readouterr().out
    for bad in ("16", "-1"):
        with pytest.raises(SystemExit):
            demo.parse_args(args + ["--max-side", bad])
    with pytest.raises(SystemExit):
        demo.parse_args(args + ["--min-score", "1.5"])


def test_decompression_bomb_sized_images_get_a_clear_message(tiny_run, tmp_path, monkeypatch):
    """Pillow refuses images above 2 x MAX_IMAGE_PIXELS (about 179 megapixels) as possible
    decompression bombs; the limit is lowered here so that a small file stands for one."""
    root, config = tiny_run
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 80 x 48 = 3840 > 2 x 1000
    image = str(root / "images" / "wide.png")
    with pytest.raises(ValueError, match=r"wide.png is too large to decode safely.*downscale it"):
        demo_images.check_images([image])
    with pytest.raises(ValueError, match="too large to decode safely"):
        demo.main([image, "--vocabulary", "sky", "--config-file", config, "--weights",
                   str(root / "model.pth"), "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="too large to decode safely"):
        demo_images.read_demo_image(image)


def test_a_long_vocabulary_gets_a_note(tiny_run, tmp_path, monkeypatch):
    root, config = tiny_run
    import cat_seg.predictor

    monkeypatch.setattr(cat_seg.predictor, "LARGE_VOCABULARY", 3)
    from cat_seg import Segmenter

    seg = Segmenter.from_config(config, str(root / "model.pth"), device="cpu")
    notes = []
    demo_images.run_demo(seg, [str(root / "images" / "wide.png")], ["sky", "road", "tree"],
                         str(tmp_path), progress=False, report=notes.append)
    assert any(n.startswith("3 class names: every pixel is compared with every name")
               for n in notes)
