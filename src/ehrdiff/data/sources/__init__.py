"""Sources: raw clinical files -> a ``Prepared`` table -> ``DIR/train.parquet``, ``DIR/test.parquet``,
``DIR/summary.json`` (split by patient, seeded). The CLI ``ehrdiff prepare SOURCE`` calls the same functions:

    from ehrdiff.data.sources import prepare
    summary = prepare("mimic", "data/", diagnoses="DIAGNOSES_ICD.csv.gz", level="patient")

Each source is one module here that registers its prepare function with ``@data_source`` (see
``ehrdiff.data.sources.registry``); importing the module below registers it, and ``ehrdiff prepare --help`` lists
the sources in the order of these imports.
"""

from __future__ import annotations

import os

# importing a source module registers it, and `ehrdiff prepare --help` lists the sources in this order
# isort: off
from ehrdiff.data.sources.mimic import prepare_mimic
from ehrdiff.data.sources.cinc2012 import prepare_cinc2012
from ehrdiff.data.sources.ptb import prepare_ptb
from ehrdiff.data.sources.uci_diabetes import prepare_uci_diabetes
from ehrdiff.data.sources.codes import prepare_codes
from ehrdiff.data.sources.table import prepare_table
from ehrdiff.data.sources.meds import prepare_meds
from ehrdiff.data.sources.omop import prepare_omop
# isort: on
from ehrdiff.data.sources.registry import SOURCES, DataSource, data_source, get_source
from ehrdiff.data.sources.split import Prepared, split_subjects, write_prepared


def prepare(source: str, out_dir: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0,
            **options) -> dict:
    """Read ``source`` with its options, split by patient and write DIR; returns the summary dict."""
    return write_prepared(get_source(source).prepare(**options), out_dir, test_fraction=test_fraction, seed=seed)


__all__ = ["SOURCES", "DataSource", "Prepared", "data_source", "get_source", "prepare", "split_subjects",
           "write_prepared", "prepare_cinc2012", "prepare_codes", "prepare_meds", "prepare_mimic", "prepare_omop",
           "prepare_ptb", "prepare_table", "prepare_uci_diabetes"]
