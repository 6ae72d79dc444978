"""Readers for the real data sets (OULAD, ASAP-AES, BEIR-format retrieval sets, course catalogs) and a
generator of synthetic look-alikes with real signal. Every reader validates schema, types and row counts
and fails with a message naming the file and column."""

from learnloop.datasets._locate import DATASET_FOLDERS, dataset_dir, datasets_root
from learnloop.datasets.asap import PROMPT_SCORE_RANGES, load_essays
from learnloop.datasets.beir import BeirDataset, load_beir
from learnloop.datasets.catalog import load_catalog
from learnloop.datasets.check import check_datasets
from learnloop.datasets.oulad import OuladTables, content_kind, load_oulad
from learnloop.datasets.synth import write_synthetic

__all__ = [
    "DATASET_FOLDERS",
    "PROMPT_SCORE_RANGES",
    "BeirDataset",
    "OuladTables",
    "check_datasets",
    "content_kind",
    "dataset_dir",
    "datasets_root",
    "load_beir",
    "load_catalog",
    "load_essays",
    "load_oulad",
    "write_synthetic",
]
