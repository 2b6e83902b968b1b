"""Datasets (the six benchmarks, COCO-Stuff, the built-in synthetic set) and the dataset mapper.

Importing this package registers every dataset with detectron2 (lazily: nothing is read from
disk until a dataset is loaded).
"""
from .benchmarks import OVSS_BENCHMARKS, PUBLIC_BENCHMARK_DATASETS, register_all_benchmarks
from .dataset_mapper import SemanticDatasetMapper
from .folder_dataset import (check_folder_dataset, register_config_folder_datasets,
                             register_folder_datasets)
from .paths import dataset_root
from .synthetic import SYNTHETIC_BENCHMARKS, register_synthetic_datasets

# Every benchmark, public and synthetic: short name (a results-table column) -> detectron2
# dataset name of its test split.
ALL_BENCHMARK_DATASETS = dict(PUBLIC_BENCHMARK_DATASETS)
ALL_BENCHMARK_DATASETS.update(SYNTHETIC_BENCHMARKS)
__all__ = ["ALL_BENCHMARK_DATASETS", "OVSS_BENCHMARKS", "PUBLIC_BENCHMARK_DATASETS",
           "SemanticDatasetMapper", "check_folder_dataset", "dataset_root",
           "register_all_benchmarks", "register_config_folder_datasets",
           "register_folder_datasets", "register_synthetic_datasets"]
