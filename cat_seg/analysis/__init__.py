"""Measuring models and studies: cost (parameters, FLOPs, latency, memory) in
:mod:`~cat_seg.analysis.measure`, its tables in :mod:`~cat_seg.analysis.report`, the parts a model
is split into in :mod:`~cat_seg.analysis.parts`, ablation tables in
:mod:`~cat_seg.analysis.ablations`. tools/analyze_model.py and tools/ablation_table.py are their
command lines."""
from . import parts  # the submodule (its parts() lists the part names)
from .measure import analyze, analyze_many, compare, load_config

__all__ = ["analyze", "analyze_many", "compare", "load_config", "parts"]
