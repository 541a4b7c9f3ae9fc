"""Sources: raw clinical files -> a ``Prepared`` table -> ``DIR/train.parquet``, ``DIR/test.parquet``,
``DIR/summary.json`` (split by patient, seeded). The CLI ``ehrdiff prepare SOURCE`` calls the same functions:

    from ehrdiff.data.sources import prepare
    summary = prepare("mimic", "data/", diagnoses="DIAGNOSES_ICD.csv.gz", level="patient")
"""

from __future__ import annotations

import os

from ehrdiff.data.sources.cinc2012 import prepare_cinc2012
from ehrdiff.data.sources.codes import prepare_codes
from ehrdiff.data.sources.meds import prepare_meds
from ehrdiff.data.sources.mimic import prepare_mimic
from ehrdiff.data.sources.ptb import prepare_ptb
from ehrdiff.data.sources.split import Prepared, split_subjects, write_prepared
from ehrdiff.data.sources.table import prepare_table
from ehrdiff.data.sources.uci_diabetes import prepare_uci_diabetes
from ehrdiff.errors import DataError

SOURCES = {
    "mimic": prepare_mimic,
    "cinc2012": prepare_cinc2012,
    "ptb": prepare_ptb,
    "uci-diabetes": prepare_uci_diabetes,
    "codes": prepare_codes,
    "table": prepare_table,
    "meds": prepare_meds,
}


def prepare(source: str, out_dir: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0,
            **options) -> dict:
    """Read ``source`` with its options, split by patient and write DIR; returns the summary dict."""
    if source not in SOURCES:
        raise DataError(f"unknown source '{source}'; choose one of {', '.join(SOURCES)}")
    return write_prepared(SOURCES[source](**options), out_dir, test_fraction=test_fraction, seed=seed)


__all__ = ["SOURCES", "Prepared", "prepare", "split_subjects", "write_prepared", "prepare_cinc2012", "prepare_codes",
           "prepare_meds", "prepare_mimic", "prepare_ptb", "prepare_table", "prepare_uci_diabetes"]
