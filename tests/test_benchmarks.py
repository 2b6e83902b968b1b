"""Benchmark registration: names, metadata, class lists, lazy loading and loud failures."""
import os
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from cat_seg.data.benchmarks import (
    BENCHMARK_SPLITS,
    OVSS_BENCHMARKS,
    PUBLIC_BENCHMARK_DATASETS,
    DatasetNotPreparedError,
    load_class_names,
    register_all_benchmarks,
)
from cat_seg.data.label_io import read_label

# CAT-Seg's dataset names, which existing configs and scripts use.
CAT_SEG_NAMES = {
    "coco_2017_train_stuff_all_sem_seg": ("COCO-171", 255, "png"),
    "coco_2017_test_stuff_all_sem_seg": ("COCO-171", 255, "png"),
    "ade20k_150_test_sem_seg": ("A-150", 255, "png"),
    "ade20k_full_sem_seg_freq_val_all": ("A-847", 65535, "tif"),
    "context_59_test_sem_seg": ("PC-59", 255, "png"),
    "context_459_test_sem_seg": ("PC-459", 459, "tif"),
    "voc_2012_test_sem_seg": ("PAS-20", 255, "png"),
    "voc_2012_test_background_sem_seg": ("PAS-20b", 255, "png"),
}
CLASS_COUNTS = {
    "coco": 171, "ade150": 150, "ade847": 847, "pc59": 59, "pc459": 459, "voc20": 20, "voc20b": 21,
}


@pytest.fixture
def registered_at(tmp_path):
    """Register every benchmark under a temporary root; restore the default root afterwards."""
    register_all_benchmarks(str(tmp_path))
    yield tmp_path
    register_all_benchmarks()


def _split(name):
    return next(s for s in BENCHMARK_SPLITS if s.dataset_name == name)


@pytest.mark.parametrize("stem, count", sorted(CLASS_COUNTS.items()))
def test_class_name_files(stem, count):
    names = load_class_names(stem)
    assert len(names) == count
    assert len(set(names)) == count
    assert all(n == n.strip() and n for n in names)


def test_class_lists_agree_with_each_other():
    voc20, voc20b = load_class_names("voc20"), load_class_names("voc20b")
    assert voc20b[:20] == voc20 and voc20b[20] == "background"
    ade847 = load_class_names("ade847")
    # Synonyms are kept as the references list them; the first name is the prompt name.
    assert ade847[1] == "building, edifice"
    assert load_class_names("coco")[:3] == ["person", "bicycle", "car"]
    assert load_class_names("coco")[80] == "banner"  # first stuff class follows the 80 things
    assert load_class_names("ade150")[7] == "bed"  # the references' "bed " lost its stray space
    assert load_class_names("pc459")[0] == "accordion"


def test_registered_names_and_metadata():
    for name, (benchmark, ignore, label_ext) in CAT_SEG_NAMES.items():
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        split = _split(name)
        assert meta.benchmark == benchmark
        assert meta.ignore_label == ignore
        assert meta.evaluator_type == "sem_seg"
        assert split.label_ext == label_ext
        assert meta.stuff_classes == load_class_names(split.class_names)
        root = os.getenv("DETECTRON2_DATASETS", "datasets")
        assert meta.image_root == os.path.join(root, split.image_dir)
        assert meta.sem_seg_root == os.path.join(root, split.label_dir)
    assert {s.dataset_name for s in BENCHMARK_SPLITS} == set(CAT_SEG_NAMES)


def test_background_class_only_for_pas20b():
    for name in CAT_SEG_NAMES:
        meta = MetadataCatalog.get(name)
        if name == "voc_2012_test_background_sem_seg":
            assert meta.background_class == meta.stuff_classes.index("background") == 20
        else:
            assert meta.get("background_class") is None


def test_benchmark_table():
    assert tuple(PUBLIC_BENCHMARK_DATASETS)[:6] == OVSS_BENCHMARKS
    assert PUBLIC_BENCHMARK_DATASETS["COCO-171"] == "coco_2017_test_stuff_all_sem_seg"
    for short, dataset in PUBLIC_BENCHMARK_DATASETS.items():
        assert MetadataCatalog.get(dataset).benchmark == short


def test_registration_is_lazy_and_loading_is_loud(tmp_path):
    missing_root = tmp_path / "nowhere"
    register_all_benchmarks(str(missing_root))
    try:
        assert not missing_root.exists()  # registering touched nothing
        with pytest.raises(DatasetNotPreparedError) as err:
            DatasetCatalog.get("ade20k_150_test_sem_seg")
        message = str(err.value)
        label_dir = missing_root / "ADEChallengeData2016/annotations_detectron2/validation"
        assert str(label_dir) in message
        assert "python datasets/prepare_ade20k_150.py" in message
        assert "ADEChallengeData2016.zip" in message
        assert isinstance(err.value, FileNotFoundError)
    finally:
        register_all_benchmarks()


def test_register_is_idempotent_and_follows_a_new_root(tmp_path):
    register_all_benchmarks()
    meta = MetadataCatalog.get("ade20k_150_test_sem_seg")
    register_all_benchmarks()
    assert MetadataCatalog.get("ade20k_150_test_sem_seg") is meta
    try:
        register_all_benchmarks(str(tmp_path))
        moved = MetadataCatalog.get("ade20k_150_test_sem_seg")
        expected = os.path.join(str(tmp_path), "ADEChallengeData2016/images/validation")
        assert moved.image_root == expected
        assert moved.stuff_classes == meta.stuff_classes
    finally:
        register_all_benchmarks()


def test_loads_every_prepared_split(registered_at, write_prepared_benchmarks):
    stems = write_prepared_benchmarks(registered_at, num_images=2, size=(12, 20))
    for name in CAT_SEG_NAMES:
        dicts = DatasetCatalog.get(name)
        assert [Path(d["file_name"]).stem for d in dicts] == stems[name]
        for d in dicts:
            assert Path(d["sem_seg_file_name"]).stem == Path(d["file_name"]).stem
            assert (d["height"], d["width"]) == (12, 20)
            assert os.path.isfile(d["file_name"]) and os.path.isfile(d["sem_seg_file_name"])


def test_sixteen_bit_labels_read_exactly(registered_at, write_label):
    label = np.array([[0, 255, 256], [846, 65535, 300]], dtype=np.uint16)
    split = _split("ade20k_full_sem_seg_freq_val_all")
    write_label(registered_at / split.label_dir / "a.tif", label)
    (registered_at / split.image_dir).mkdir(parents=True)
    Image.new("RGB", (3, 2)).save(registered_at / split.image_dir / "a.jpg")
    (record,) = DatasetCatalog.get(split.dataset_name)
    assert np.array_equal(read_label(record["sem_seg_file_name"]), label)


def test_empty_label_folder_is_an_error(registered_at, write_prepared_benchmarks):
    split = _split("voc_2012_test_sem_seg")
    write_prepared_benchmarks(registered_at, dataset_names=["voc_2012_test_background_sem_seg"])
    (registered_at / split.label_dir).mkdir(parents=True)
    with pytest.raises(DatasetNotPreparedError, match="has no \\*.png file.*prepare_voc.py"):
        DatasetCatalog.get(split.dataset_name)


def test_images_without_labels_are_an_error_where_the_folder_is_the_split(registered_at,
                                                                          write_prepared_benchmarks):
    name = "coco_2017_test_stuff_all_sem_seg"
    write_prepared_benchmarks(registered_at, num_images=3, dataset_names=[name])
    os.remove(registered_at / _split(name).label_dir / "img_0001.png")
    with pytest.raises(DatasetNotPreparedError, match=r"1 of the 3 images .* \(img_0001\)"):
        DatasetCatalog.get(name)


def test_shared_image_folder_keeps_only_labelled_images(registered_at, write_prepared_benchmarks):
    name = "context_59_test_sem_seg"
    write_prepared_benchmarks(registered_at, num_images=2, dataset_names=[name])
    images = os.listdir(registered_at / _split(name).image_dir)
    assert len(images) == 3  # one unlabelled image, as in VOC's JPEGImages
    assert len(DatasetCatalog.get(name)) == 2


def test_labels_without_images_are_an_error(registered_at, write_prepared_benchmarks, write_label):
    name = "context_459_test_sem_seg"
    write_prepared_benchmarks(registered_at, num_images=2, dataset_names=[name])
    split = _split(name)
    write_label(registered_at / split.label_dir / "orphan.tif", np.zeros((4, 4)))
    with pytest.raises(DatasetNotPreparedError, match="1 labels .* have no image .*orphan"):
        DatasetCatalog.get(name)


def test_no_labelled_image_is_an_error(registered_at, write_label):
    name = "voc_2012_test_sem_seg"
    split = _split(name)
    (registered_at / split.image_dir).mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(registered_at / split.image_dir / "a.jpg")
    write_label(registered_at / split.label_dir / "b.png", np.zeros((4, 4)))
    with pytest.raises(DatasetNotPreparedError, match="none of the 1 images"):
        DatasetCatalog.get(name)


def test_temporary_files_of_an_interrupted_run_are_not_labels(registered_at,
                                                              write_prepared_benchmarks):
    name = "ade20k_150_test_sem_seg"
    write_prepared_benchmarks(registered_at, num_images=1, dataset_names=[name])
    label_dir = registered_at / _split(name).label_dir
    (label_dir / ".img_0009.png.tmp").write_bytes(b"partial")
    (label_dir / ".hidden.png").write_bytes(b"partial")
    assert len(DatasetCatalog.get(name)) == 1


def test_pas20b_prompts_with_the_voc_and_context_vocabulary():
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get("voc_2012_test_background_sem_seg")
    voc = MetadataCatalog.get("voc_2012_test_sem_seg").stuff_classes
    # CAT-Seg's voc20b.json: the 20 VOC classes first, then the 39 PC-59 classes that are not VOC.
    assert meta.prompt_classes[:20] == list(voc)
    assert len(meta.prompt_classes) == 59 == len(set(meta.prompt_classes))
    assert "background" not in meta.prompt_classes
    assert meta.stuff_classes[meta.background_class] == "background"
