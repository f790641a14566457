"""Node-side data: sources, dataset specs, profiling, harmonization, standardization, scenarios."""

from clawfed.data.dataset import (
    DatasetSpec,
    LocalDataset,
    check_columns,
    encode_frame,
    holdout_indices,
    load_dataset,
    load_spec,
    load_split,
    read_frame,
)
from clawfed.data.encode import Task
from clawfed.data.harmonize import (
    FittedHarmonization,
    Harmonization,
    ImputeRule,
    ImputeStrategy,
    ScaleRule,
    load_harmonization,
    save_harmonization,
)
from clawfed.data.profile import DataQuality, DatasetProfile, profile
from clawfed.data.schema import ColumnType, infer_column_type
from clawfed.data.sources import CsvSource, ParquetSource, Source, SqlSource, read_source
from clawfed.data.standardize import Moments, Standardizer, combine, local_moments

__all__ = [
    "ColumnType",
    "CsvSource",
    "DataQuality",
    "DatasetProfile",
    "DatasetSpec",
    "FittedHarmonization",
    "Harmonization",
    "ImputeRule",
    "ImputeStrategy",
    "LocalDataset",
    "Moments",
    "ParquetSource",
    "ScaleRule",
    "Source",
    "SqlSource",
    "Standardizer",
    "Task",
    "check_columns",
    "combine",
    "encode_frame",
    "holdout_indices",
    "infer_column_type",
    "load_dataset",
    "load_harmonization",
    "load_spec",
    "load_split",
    "local_moments",
    "profile",
    "read_frame",
    "read_source",
    "save_harmonization",
]
