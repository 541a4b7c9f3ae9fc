"""``ehrdiff demo``: bundled data with its licence, outputs written, comparison consistent with the files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd

from ehrdiff.cli import main
from ehrdiff.demo import demo_data_dir


def test_bundled_demo_data_keeps_its_licence_and_source():
    folder = demo_data_dir()
    assert "Open Database License" in (folder / "LICENSE-ODbL.txt").read_text()
    assert "MIMIC-IV Clinical Database Demo" in (folder / "SOURCE.md").read_text()
    with gzip.open(folder / "diagnoses_icd.csv.gz", "rt") as f:
        rows = pd.read_csv(f, dtype=str)
    assert len(rows) == 4506                                   # MIMIC-IV demo v2.2: 4,506 diagnosis rows


def test_demo_writes_synthetic_data_and_a_consistent_comparison(tmp_path):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), "--steps", "30"]) == 0
    for name in ("synthetic.parquet", "synthetic.csv", "comparison.json", "comparison.md", "LICENSE-ODbL.txt",
                 "SOURCE.md", "model/model.json"):
        assert (out / name).exists(), name
    comparison = json.loads((out / "comparison.json").read_text())
    # recompute from the files, independently of the code under test
    with gzip.open(demo_data_dir() / "diagnoses_icd.csv.gz", "rt") as f:
        rows = pd.read_csv(f, dtype=str)
    icd9 = rows[rows["icd_version"] == "9"]
    patients = icd9["subject_id"].nunique()
    synthetic = pd.read_csv(out / "synthetic.csv")
    codes = [c for c in synthetic.columns if c.startswith("ICD9:")]
    assert comparison["patients"] == patients == len(synthetic)
    assert comparison["codes"] == len(codes)
    counts = synthetic[codes].to_numpy().sum(axis=0)
    real = (icd9.assign(cat=icd9["icd_code"].map(lambda c: "ICD9:" + (c[:4] if c.startswith("E") else c[:3])))
                .drop_duplicates(["subject_id", "cat"]))
    assert sorted(real["cat"].unique()) == sorted(codes)
    assert comparison["codes_never_generated"] == int((counts == 0).sum())
    assert np.isclose(comparison["codes_per_patient_real"], len(real) / patients)
    assert np.isclose(comparison["codes_per_patient_synthetic"], counts.sum() / len(synthetic))
    real_sets = {frozenset(g) for _, g in real.groupby("subject_id")["cat"]}
    synthetic_sets = [frozenset(c for c, v in zip(codes, row) if v) for row in synthetic[codes].to_numpy()]
    assert np.isclose(comparison["identical_to_a_real_patient"],
                      np.mean([s in real_sets for s in synthetic_sets]))


def test_demo_defaults_stop_before_copying_patients(tmp_path):
    # no --steps: the budget derived from the 76 patients and the held-out stopping rule (issue 22: at most 5% of
    # synthetic patients identical to a real one; 1,000 fixed steps copied 22%)
    assert main(["-q", "demo", "-o", str(tmp_path / "demo")]) == 0
    comparison = json.loads((tmp_path / "demo" / "comparison.json").read_text())
    saved = json.loads((tmp_path / "demo" / "model" / "model.json").read_text())
    assert comparison["held_out"] == saved["budget"]["held_out"] == 8
    assert comparison["chosen_step"] == saved["stopping"]["chosen_step"] <= comparison["steps"]
    assert comparison["steps"] < saved["budget"]["steps"]          # stopped before the budget's end
    assert comparison["identical_to_a_real_patient"] <= 0.05
    text = (tmp_path / "demo" / "comparison.md").read_text()
    assert "identical to a real one" in text
    # 76 patients: the codes are calibrated to the training prevalences, and the page says so
    assert comparison["calibrated"] and "agree by construction" in text
