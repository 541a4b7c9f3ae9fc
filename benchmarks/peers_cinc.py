"""The peers a user would pick instead of ehrdiff, on CinC 2012 under ehrdiff's evaluation (issue 20).

    nice -n 15 .venv/bin/python benchmarks/peers_cinc.py                 # everything not yet in the work folder
    nice -n 15 .venv/bin/python benchmarks/peers_cinc.py --rerun ehrdiff # train ehrdiff's row again, re-evaluate
    nice -n 15 .venv/bin/python benchmarks/peers_cinc.py --table         # only the table, from the work folder
    nice -n 15 .venv/bin/python benchmarks/peers_cinc.py --quick         # smoke run (400 rows, a few epochs)

CinC 2012 set-a with the project's patient split (``ehrdiff prepare cinc2012``: 3,200 training stays, 800 test).
Each peer is trained with its own defaults on the training table (its ``record_id`` left out: an id, which
ehrdiff does not train on either), sampled at the training size, and written as Parquet with the training table's
columns, types and metadata (the kinds and the declared rules travel with it; ``record_id`` becomes 1..n):

  gaussiancopula  SDV GaussianCopulaSynthesizer, metadata from ``Metadata.detect_from_dataframes``
  ctgan           SDV CTGANSynthesizer (300 epochs, its default)
  tvae            SDV TVAESynthesizer (300 epochs, its default)
  tabularargn     MOSTLY AI's engine, ``TabularARGN`` (100 epochs at most with early stopping, its defaults) with a
                  time cap (``max_training_time``, --argn-minutes, default 20) since the 2-core machine is shared
  ehrdiff         ``ehrdiff train TRAIN -o RUN --seed 0`` (defaults, no --steps), ``ehrdiff sample RUN -n ROWS``

One seed each (0). All five and the references are then scored by ONE ``ehrdiff evaluate`` call (same real train
and test, same metrics; the rule breaks count the rules the training table declares). Writes
benchmarks/results/peers_cinc.md.

The peers are never dependencies of ehrdiff: they run in a separate environment (--peer-python), made once:

    python3.11 -m venv /tmp/peerenv
    /tmp/peerenv/bin/pip install torch==2.13.0          # the CPU build first (a bare torch pulls a CUDA build)
    /tmp/peerenv/bin/pip install sdv mostlyai-engine    # measured with sdv 2.0.0, mostlyai-engine 2.7.3
    /tmp/peerenv/bin/pip uninstall -y torchvision torchaudio

mostlyai-engine pulls in torchvision and torchaudio, whose PyPI builds do not load with the CPU torch 2.13
("operator torchvision::nms does not exist", raised when the engine imports transformers); its tabular model uses
neither, and transformers skips them when they are absent.

This script imports only the standard library at the top, so that it runs in both environments: the ehrdiff
environment drives it (prepare, ehrdiff, evaluate, table) and starts ``--peer NAME`` in the peers' environment,
which only reads and writes Parquet. Everything is cached in the work folder (--work, default
benchmarks/out/peers_cinc/): a peer or a step whose output is there is not run again, so ehrdiff's row can be
retrained alone (--rerun ehrdiff) while the peers' samples are kept. Every process runs one thread
(OMP_NUM_THREADS=1, torch.set_num_threads(1)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = Path(os.environ.get("EHRDIFF_DATA", "/work/shared/data")) / "physionet-challenge-2012"
PEERS = ("gaussiancopula", "ctgan", "tvae", "tabularargn")
GENERATORS = ("ehrdiff",) + PEERS
TITLES = {"ehrdiff": "ehrdiff (default)", "gaussiancopula": "GaussianCopula", "ctgan": "CTGAN", "tvae": "TVAE",
          "tabularargn": "TabularARGN", "reference:real-test": "real test half",
          "reference:independent": "independent columns"}
ID_COLUMN = "record_id"
SEED = 0
QUICK_ROWS = 400
CLI = [sys.executable, "-c", "import sys; from ehrdiff.cli import main; sys.exit(main())"]
METRICS = [("continuous_ks_mean", "continuous KS (mean)", "<= 0.05"),
           ("categorical_tvd_mean", "categorical TVD (mean)", "-"),
           ("discriminator_auroc_lr", "discriminator AUROC (logistic)", "<= 0.65"),
           ("discriminator_auroc", "discriminator AUROC (trees)", "<= 0.70"),
           ("tstr_auroc", "TSTR AUROC", ">= 0.83"),
           ("mia_auroc", "membership-inference AUROC", "<= 0.53"),
           ("exact_copy_rate", "synthetic rows identical to a training row", "0"),
           ("rule_break_rate", "rows breaking a declared rule", "<= 0.01"),
           ("rule_break_max", "rows breaking the most-broken rule", "-"),
           ("continuous_correlation_distance", "continuous correlation distance", "-")]


# ---- load while a step runs ---------------------------------------------------------------------------------------
class LoadWatch:
    """The 1-minute load average sampled every 15 s while a step runs (its mean and maximum)."""

    def __init__(self) -> None:
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(15):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        return {"load_mean": sum(self.samples) / len(self.samples), "load_max": max(self.samples)}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ---- the peers (run in the peers' environment) --------------------------------------------------------------------
def fit_peer(name: str, data, quick: bool, argn_minutes: float, workspace: Path):
    """Train peer ``name`` on ``data`` with its defaults; (a function drawing n rows, settings worth reporting)."""
    if name == "tabularargn":
        from mostlyai.engine import TabularARGN

        shutil.rmtree(workspace, ignore_errors=True)
        settings = {"max_training_time_minutes": argn_minutes, "random_state": SEED}
        if quick:
            settings |= {"max_epochs": 1}
        model = TabularARGN(max_training_time=argn_minutes, random_state=SEED, workspace_dir=workspace, verbose=1,
                            **({"max_epochs": 1} if quick else {}))
        model.fit(data)
        settings |= argn_progress(workspace)
        return (lambda n: model.sample(n_samples=n)), settings

    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    tables = {"cinc2012": data}      # SDV 2 takes and returns {table name: frame}, also for one table
    metadata = Metadata.detect_from_dataframes(tables)
    columns = metadata.to_dict()["tables"]["cinc2012"]["columns"]
    sdtypes: dict[str, int] = {}
    for spec in columns.values():
        sdtypes[spec["sdtype"]] = sdtypes.get(spec["sdtype"], 0) + 1
    options = {"epochs": 2} if quick and name != "gaussiancopula" else {}
    synthesizer = {"gaussiancopula": GaussianCopulaSynthesizer, "ctgan": CTGANSynthesizer,
                   "tvae": TVAESynthesizer}[name](metadata, **options)
    synthesizer.fit(tables)
    settings = {"detected_sdtypes": sdtypes, **options}
    if name != "gaussiancopula":
        settings["epochs"] = synthesizer.get_parameters().get("epochs")
    return (lambda n: synthesizer.sample(num_rows=n)["cinc2012"]), settings


def argn_progress(workspace: Path) -> dict:
    """Epochs and steps TabularARGN ran, from its progress file (empty when the file is not where expected)."""
    import pandas as pd

    found = sorted(workspace.rglob("progress-messages.csv"))
    if not found:
        return {}
    progress = pd.read_csv(found[0])
    last = progress.iloc[-1]
    keys = ("epoch", "steps", "samples", "val_loss", "total_time")
    return {key: float(last[key]) for key in keys if key in progress.columns and pd.notna(last[key])}


def conform(synthetic, frame, schema):
    """The peer's rows as an Arrow table with the training table's columns, types and metadata: integer columns
    rounded (a peer may return 3.0 or 2.7 for a count), a fresh id 1..n, nothing else changed."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    n = len(synthetic)
    arrays = []
    for field in schema:
        if field.name == ID_COLUMN:
            arrays.append(pa.array(np.arange(1, n + 1), type=field.type))
            continue
        values = synthetic[field.name]
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            values = pd.to_numeric(values, errors="coerce").astype(float)
            if pa.types.is_integer(field.type):
                values = values.round().astype("Int64")
        arrays.append(pa.array(values, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def peer_versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("sdv", "ctgan", "copulas", "rdt", "mostlyai-engine", "torch", "pandas")}


def run_peer(name: str, work: Path, quick: bool, argn_minutes: float) -> None:
    """Train, sample and write one peer (in the peers' environment): PEERS/NAME.parquet and NAME.json."""
    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(1)
    out = work / "peers"
    out.mkdir(parents=True, exist_ok=True)
    train_path = work / "data" / "train.parquet"
    schema = pq.read_schema(train_path)
    frame = pq.read_table(train_path).to_pandas()
    data = frame.drop(columns=[ID_COLUMN])
    print(f"{name}: training on {len(data):,} rows x {data.shape[1]} columns ({now()})", flush=True)
    with LoadWatch() as load:
        started = time.perf_counter()
        draw, settings = fit_peer(name, data, quick, argn_minutes, work / "argn-workspace")
        trained = time.perf_counter()
        synthetic = draw(len(frame))
        sampled = time.perf_counter()
    table = conform(synthetic, frame, schema)
    pq.write_table(table, out / f"{name}.parquet")
    record = {"generator": name, "seed": SEED, "rows": len(frame), "train_seconds": trained - started,
              "sample_seconds": sampled - trained, "settings": settings, "versions": peer_versions(),
              "finished": now(), **load.summary()}
    (out / f"{name}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"{name}: trained in {record['train_seconds']:.0f} s, sampled in {record['sample_seconds']:.0f} s; "
          f"{settings}", flush=True)


# ---- ehrdiff, the evaluation and the table (run in ehrdiff's environment) ------------------------------------------
def cli(args: list[str], log: Path) -> float:
    """Run an ehrdiff command, its output to ``log``; wall seconds."""
    started = time.perf_counter()
    with open(log, "w") as out:
        out.write("$ ehrdiff " + shlex.join(args) + "\n")
        out.flush()
        done = subprocess.run(CLI + args, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"failed (exit {done.returncode}): ehrdiff {shlex.join(args)}; see {log}")
    return time.perf_counter() - started


def prepare(work: Path, quick: bool) -> None:
    """The project's patient split in WORK/data (a smoke run: the first rows of the full run's split)."""
    data = work / "data"
    if (data / "train.parquet").exists():
        return
    full = work.parent / "data" if quick else data
    if not (full / "train.parquet").exists():
        full.parent.mkdir(parents=True, exist_ok=True)
        cli(["prepare", "cinc2012", "--records", str(DATA / "set-a.tar.gz"), "--outcomes",
             str(DATA / "Outcomes-a.txt"), "-o", str(full)], full.parent / "prepare.log")
    if quick:          # a smaller table: the smoke run checks the plumbing, not the numbers
        from ehrdiff.data.io import read_table, write_table

        data.mkdir(parents=True, exist_ok=True)
        for part, rows in (("train", QUICK_ROWS), ("test", QUICK_ROWS // 4)):
            table = read_table(full / f"{part}.parquet")
            write_table(table.subset(range(min(rows, table.n_rows))), data / f"{part}.parquet")


def run_ehrdiff(work: Path, quick: bool) -> None:
    folder = work / "ehrdiff"
    if (folder / "ehrdiff.json").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    import pyarrow.parquet as pq

    rows = pq.read_metadata(work / "data" / "train.parquet").num_rows
    print(f"ehrdiff: training with defaults ({now()})", flush=True)
    with LoadWatch() as load:
        train = cli(["train", str(work / "data" / "train.parquet"), "-o", str(folder / "run"), "--seed", str(SEED),
                     *(["--steps", "20"] if quick else [])], folder / "train.log")
        sample = cli(["sample", str(folder / "run"), "-n", str(rows), "--seed", str(SEED), "-o",
                      str(work / "peers" / "ehrdiff.parquet"), "--overwrite"], folder / "sample.log")
    model = json.loads((folder / "run" / "model.json").read_text())
    import torch

    from ehrdiff import __version__

    record = {"generator": "ehrdiff", "seed": SEED, "rows": rows, "train_seconds": train, "sample_seconds": sample,
              "settings": {"preset": model.get("preset"), "steps": model.get("train_steps"),
                           "batch_size": model.get("budget", {}).get("batch_size"),
                           "budget": model.get("budget", {}).get("reason")},
              "versions": {"ehrdiff": __version__, "torch": torch.__version__}, "finished": now(), **load.summary()}
    (folder / "ehrdiff.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"ehrdiff: trained in {train:.0f} s, sampled in {sample:.0f} s", flush=True)


def evaluate(work: Path) -> None:
    present = [g for g in GENERATORS if (work / "peers" / f"{g}.parquet").exists()]
    data = work / "data"
    report = work / "report"
    with LoadWatch() as load:
        seconds = cli(["evaluate", "--train", str(data / "train.parquet"), "--test", str(data / "test.parquet"),
                       "--synthetic", *[f"{g}={work / 'peers' / f'{g}.parquet'}" for g in present],
                       "--threads", "1", "--no-figures", "--overwrite", "-o", str(report)], work / "evaluate.log")
    (work / "evaluate.json").write_text(json.dumps({"seconds": seconds, "generators": present, "finished": now(),
                                                    **load.summary()}) + "\n")


def cell(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(work: Path, argn_minutes: float) -> str:
    metrics = json.loads((work / "report" / "metrics.json").read_text())
    datasets = metrics["datasets"]
    evaluated = json.loads((work / "evaluate.json").read_text())
    records = {}
    for g in evaluated["generators"]:
        path = work / ("ehrdiff/ehrdiff.json" if g == "ehrdiff" else f"peers/{g}.json")
        records[g] = json.loads(path.read_text())
    names = list(evaluated["generators"]) + [r for r in ("reference:real-test", "reference:independent")
                                             if r in datasets]
    lines = ["| metric | issue 20's target | " + " | ".join(TITLES.get(n, n) for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for key, title, target in METRICS:
        cells = []
        for n in names:
            value = datasets[n].get(key)
            reason = datasets[n].get("skipped", {}).get(key)
            cells.append(cell(value) if value is not None or not reason else f"none ({reason.split(';')[0]})")
        lines.append(f"| {title} | {target} | " + " | ".join(cells) + " |")
    trtr = next((d.get("trtr_auroc") for d in datasets.values() if d.get("trtr_auroc") is not None), None)
    rules = metrics.get("rules", {})
    worst = []
    for n in names:
        shares = {r: s for r, s in rules.get("datasets", {}).get(n, {}).items() if s is not None}
        worst.append(max(shares, key=shares.get) if shares and max(shares.values()) > 0 else "-")
    lines.append("| the most-broken rule | - | " + " | ".join(f"`{w}`" if w != "-" else w for w in worst) + " |")
    for key, title in (("train_seconds", "training seconds"), ("sample_seconds", "sampling seconds")):
        lines.append(f"| {title} | - | " + " | ".join(
            f"{records[n][key]:,.0f}" if n in records else "-" for n in names) + " |")
    lines.append("| load average while it trained (mean / max) | - | " + " | ".join(
        f"{records[n]['load_mean']:.1f} / {records[n]['load_max']:.1f}" if n in records else "-" for n in names)
        + " |")
    versions: dict[str, str] = {}
    for record in records.values():
        versions |= record["versions"]
    argn = records.get("tabularargn", {}).get("settings", {})
    # the engine logs its progress every few minutes, so its last total_time can fall short of the cap it stopped at:
    # the whole training call's seconds tell
    spent = max(argn.get("total_time", 0), records.get("tabularargn", {}).get("train_seconds", 0))
    capped = spent >= 60 * argn_minutes
    missing = [TITLES[g] for g in PEERS if g not in records]
    sdtypes = records.get("gaussiancopula", {}).get("settings", {}).get("detected_sdtypes")
    head = ["# The peers on CinC 2012: SDV and MOSTLY AI under ehrdiff's evaluation", "",
            f"Command: `.venv/bin/python benchmarks/peers_cinc.py --work {work} --argn-minutes {argn_minutes:g}` "
            "(the peers in their own environment, `--peer-python /tmp/peerenv/bin/python`, made as the script's "
            "docstring says; everything cached in the work folder; `--rerun ehrdiff` retrains ehrdiff's row alone "
            "and re-evaluates)", "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (the load of each "
            f"training below), one thread per process; Python "
            f"{platform.python_version()}. Packages: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
            + ". Evaluated " + evaluated["finished"] + f" by one `ehrdiff evaluate` call ({evaluated['seconds']:.0f} s,"
            f" load {evaluated['load_mean']:.1f}).", "",
            "CinC 2012 set-a, the project's patient split (3,200 training stays, 800 test; 227 columns: descriptors "
            "and first/last/min/max/mean/count of 37 variables, in-hospital death as the label). Every generator: "
            "its own default settings, seed 0, one run (no ± : one seed), sampled at the training size, written with "
            "the training table's columns and types; the declared rules (a variable's first, last and mean within "
            "its minimum and maximum; its count a whole number >= 0, and 0 exactly when its values are missing) "
            "travel in the Parquet metadata and are counted by `ehrdiff evaluate` on every dataset."
            + (f" SDV's detected column types: {', '.join(f'{v} {k}' for k, v in sdtypes.items())}." if sdtypes
               else "")
            + (f" TabularARGN ran with `max_training_time={argn_minutes:g}` minutes (its default is 10 days) and "
               f"its other defaults; it stopped after {argn.get('epoch', '?')} epochs"
               + (", at its time cap." if capped else ", before its time cap (early stopping or 100 epochs).")
               if argn else "")
            + (f" The label classifier trained on the real training rows (TRTR) scores {trtr:.3f}." if trtr
               else "")
            + (f" Not measured (no sample in the work folder: not run, or stopped before it finished): "
               f"{', '.join(missing)}." if missing else ""), ""]
    return "\n".join(head + lines + [""] + verdicts(datasets, evaluated["generators"])) + "\n"


def verdicts(datasets: dict, generators: list[str]) -> list[str]:
    """Issue 20 asks ehrdiff to be ahead of every peer on both discriminators (closer to 0.5) and on TSTR."""
    peers = [g for g in generators if g != "ehrdiff"]
    if "ehrdiff" not in generators or not peers:
        return []
    out = []
    for key, title, better in (("discriminator_auroc_lr", "logistic discriminator", "half"),
                               ("discriminator_auroc", "trees discriminator", "half"), ("tstr_auroc", "TSTR", "high")):
        ours = datasets["ehrdiff"].get(key)
        behind = []
        for p in peers:
            theirs = datasets[p].get(key)
            if ours is None:
                behind.append(TITLES[p])
            elif theirs is not None and (abs(theirs - 0.5) <= abs(ours - 0.5) if better == "half" else theirs >= ours):
                behind.append(TITLES[p])
        out.append(f"- {title}: ehrdiff " + ("ahead of every peer measured here" if not behind else
                                             "not ahead of " + ", ".join(behind)))
    return ["Issue 20 asks ehrdiff to be ahead of every peer on both discriminators (closer to 0.5) and on TSTR "
            f"(peers measured: {', '.join(TITLES[p] for p in peers)}):", *out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "peers_cinc", help="work folder (the cache)")
    parser.add_argument("--peer-python", default="/tmp/peerenv/bin/python", help="the peers' environment's python")
    parser.add_argument("--only", action="append", choices=GENERATORS, help="run only this generator (repeatable)")
    parser.add_argument("--rerun", action="append", choices=GENERATORS, default=[],
                        help="drop this generator's cached output first (repeatable)")
    parser.add_argument("--argn-minutes", type=float, default=20.0, help="TabularARGN's max_training_time")
    parser.add_argument("--table", action="store_true", help="only write the table from the work folder")
    parser.add_argument("--no-evaluate", action="store_true", help="train and sample only (evaluate later)")
    parser.add_argument("--quick", action="store_true", help="400 rows, 2 epochs: checks the plumbing")
    parser.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)   # internal: one peer, peers' environment
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    work = args.work / "quick" if args.quick else args.work
    if args.peer:
        run_peer(args.peer, work, args.quick, args.argn_minutes)
        return
    if not args.table:
        for g in args.rerun:
            for path in (work / "peers" / f"{g}.parquet", work / "peers" / f"{g}.json"):
                path.unlink(missing_ok=True)
            shutil.rmtree(work / "ehrdiff", ignore_errors=True) if g == "ehrdiff" else None
        prepare(work, args.quick)
        for g in args.only or GENERATORS:
            if g == "ehrdiff":
                run_ehrdiff(work, args.quick)
            elif not (work / "peers" / f"{g}.json").exists():
                command = [args.peer_python, __file__, "--peer", g, "--work", str(args.work),
                           "--argn-minutes", str(args.argn_minutes), *(["--quick"] if args.quick else [])]
                log = work / f"{g}.log"
                with open(log, "w") as out:
                    done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
                if done.returncode:
                    sys.exit(f"failed (exit {done.returncode}): {shlex.join(command)}; see {log}")
                print((work / f"{g}.log").read_text().splitlines()[-1], flush=True)
        if args.no_evaluate:
            return
        evaluate(work)
    text = markdown(work, args.argn_minutes)
    target = work / "peers_cinc.md" if args.quick else ROOT / "results" / "peers_cinc.md"
    target.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
