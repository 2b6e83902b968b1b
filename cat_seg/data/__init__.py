"""Datasets (the six benchmarks, COCO-Stuff, the built-in synthetic set) and the dataset mapper.

Importing this package registers every dataset with detectron2 (lazily: nothing is read from
disk until a dataset is loaded).
"""
from .benchmarks import BENCHMARKS as _BENCHMARK_DATASETS
from .benchmarks import OVSS_BENCHMARKS, register_all_benchmarks
from .dataset_mapper import SemanticDatasetMapper
from .synthetic import SYNTHETIC_DATASETS, register_synthetic_datasets

# Benchmark short name (a results-table column) -> detectron2 dataset name of its test split.
BENCHMARKS = dict(_BENCHMARK_DATASETS)
BENCHMARKS.update({benchmark: name for name, (split, _, benchmark) in SYNTHETIC_DATASETS.items()
                   if split != "seen_train"})

__all__ = ["BENCHMARKS", "OVSS_BENCHMARKS", "SemanticDatasetMapper", "register_all_benchmarks",
           "register_synthetic_datasets"]
