"""Writes of the operations commands: importing an export, pruning old work."""

from ops.services.importing import DataImportError, ImportReport, data_import
from ops.services.pruning import (
    PRUNE_MODELS,
    PruneReport,
    prune_archive,
    prune_count,
    prune_run,
)

__all__ = [
    "PRUNE_MODELS",
    "DataImportError",
    "ImportReport",
    "PruneReport",
    "data_import",
    "prune_archive",
    "prune_count",
    "prune_run",
]
