"""The bundled demo: train on the MIMIC-IV Clinical Database Demo diagnoses, sample, compare code prevalence.

The data (100 patients, ODbL 1.0, PhysioNet) ship in ``ehrdiff/demo_data`` with their licence and attribution;
the demo copies both next to its output, because data derived from an ODbL database stays under ODbL.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path

from ehrdiff.data.io import write_table
from ehrdiff.data.sources.mimic import prepare_mimic
from ehrdiff.data.table import Table
from ehrdiff.fileio import write_text_atomic

log = logging.getLogger(__name__)

# the library's defaults: the budget derived from the 76 patients and the held-out stopping rule (models/ehrdiff/
# budget.py), which stop before the model reproduces them (README, "Quick start")
DEMO_PRESET = "default"
DEMO_FILES = ("diagnoses_icd.csv.gz", "LICENSE-ODbL.txt", "SOURCE.md")
# what run_demo writes into its folder (``ehrdiff demo`` replaces them only with --overwrite)
DEMO_OUTPUTS = ("model", "synthetic.parquet", "synthetic.csv", "comparison.json", "comparison.md", "LICENSE-ODbL.txt",
                "SOURCE.md")


def demo_data_dir() -> Path:
    return Path(str(resources.files("ehrdiff") / "demo_data"))


def demo_table() -> Table:
    """Patient x 3-digit ICD-9 category matrix of the MIMIC-IV demo (ICD-10 rows dropped, as the paper's ICD-9
    setup)."""
    return prepare_mimic(demo_data_dir() / "diagnoses_icd.csv.gz", level="patient", icd10="drop").table


def prevalence_comparison(real: Table, synthetic: Table) -> dict:
    """Per-code prevalence of real vs synthetic binary columns: the paper's dimension-wise probability summary."""
    from ehrdiff.evaluation import EvaluationConfig, fidelity
    from ehrdiff.evaluation.privacy import identical_shares

    codes = real.columns_of("binary")
    real_rows = real.frame[codes].to_numpy(dtype=float)
    synthetic_rows = synthetic.frame[codes].to_numpy(dtype=float)
    p_real, p_syn = real_rows.mean(axis=0), synthetic_rows.mean(axis=0)
    agreement = fidelity.prevalence_metrics(p_real, p_syn, EvaluationConfig().prevalence_buckets)
    return {
        "codes": len(codes),
        "prevalence_pearson": float(agreement["prevalence_pearson"]),
        "prevalence_spearman": float(agreement["prevalence_spearman"]),
        "codes_never_generated": fidelity.codes_never_generated(p_real, synthetic_rows.sum(axis=0)),
        "codes_per_patient_real": float(real_rows.sum(axis=1).mean()),
        "codes_per_patient_synthetic": float(synthetic_rows.sum(axis=1).mean()),
        # the demo trains on every patient, so a copy is a memorised patient (README, "Small data")
        "identical_to_a_real_patient": identical_shares(real_rows, synthetic_rows)[0],
    }


def run_demo(out_dir: str | Path, *, preset: str = DEMO_PRESET, steps: int | None = None, seed: int = 0,
             progress: bool = True) -> dict:
    """Train, sample as many patients as the demo has, write synthetic.parquet/.csv and comparison.json/.md.
    ``steps``: None (or 0) for the preset's own, which for ``default`` is the budget derived from the data."""
    from ehrdiff.models.ehrdiff import EHRDiff
    from ehrdiff.models.ehrdiff.calibrate import calibrates

    out = Path(out_dir)
    real = demo_table()
    log.info("demo data: %d patients x %d ICD-9 categories (MIMIC-IV Clinical Database Demo v2.2)",
             real.n_rows, len(real.columns_of("binary")))
    overrides = {"seed": seed} | ({"steps": steps} if steps else {})
    model = EHRDiff(preset=preset, **overrides).fit(real, progress=progress)
    model.save(out / "model")
    synthetic = model.sample_table(real.n_rows, seed=seed, progress=progress)
    write_table(synthetic, out / "synthetic.parquet")
    write_table(synthetic, out / "synthetic.csv")
    comparison = prevalence_comparison(real, synthetic)
    stopping = getattr(model, "stopping_", None) or {}
    comparison |= {"patients": real.n_rows, "preset": preset, "steps": model.train_steps_, "seed": seed,
                   "chosen_step": stopping.get("chosen_step"), "held_out": (model.budget_ or {}).get("held_out", 0),
                   "calibrated": calibrates(model)}
    write_text_atomic(out / "comparison.json", json.dumps(comparison, indent=2))
    write_text_atomic(out / "comparison.md", _markdown(comparison))
    for name in ("LICENSE-ODbL.txt", "SOURCE.md"):
        shutil.copyfile(demo_data_dir() / name, out / name)
    return comparison


def _markdown(c: dict) -> str:
    from ehrdiff.models.ehrdiff.calibrate import SMALL_TABLE_ROWS

    return "\n".join([
        "# ehrdiff demo: code prevalence, synthetic vs real",
        "",
        f"Data: MIMIC-IV Clinical Database Demo v2.2 diagnoses (ODbL 1.0, see LICENSE-ODbL.txt and SOURCE.md), "
        f"{c['patients']} patients x {c['codes']} three-digit ICD-9 categories. Model: EHRDiff, preset "
        f"`{c['preset']}`, {c['steps']} steps, seed {c['seed']}; {c['patients']} synthetic patients."
        + (f" {c['held_out']} patients were held out of training: it stopped where their denoising loss stopped "
           f"improving and kept the weights of step {c['chosen_step']}." if c.get("chosen_step") else ""),
        "",
        "| metric | value |",
        "|---|---|",
        f"| prevalence Pearson correlation | {c['prevalence_pearson']:.3f} |",
        f"| prevalence Spearman correlation | {c['prevalence_spearman']:.3f} |",
        f"| codes in the real data never generated | {c['codes_never_generated']} of {c['codes']} |",
        f"| codes per patient, real / synthetic | {c['codes_per_patient_real']:.2f} / "
        f"{c['codes_per_patient_synthetic']:.2f} |",
        f"| synthetic patients identical to a real one | {c['identical_to_a_real_patient']:.0%} |",
        "",
        *([f"On a table this small (under {SMALL_TABLE_ROWS:,} patients) the sampler sets each code's count to its "
           "training prevalence (`code_prevalence`), so the prevalences agree by construction; the model decides "
           "which patients get which codes.", ""] if c.get("calibrated") else []),
        "A synthetic patient identical to a real one is most likely a memorised patient (the real patients rarely "
        "share all their codes): check the privacy metrics of `ehrdiff evaluate` (with a held-out set) before "
        "sharing synthetic data.",
        "",
    ])
