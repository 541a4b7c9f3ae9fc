"""What an experiment runs: the datasets of the paper's comparison, the compute budget, and each model's settings
under that budget.

Budget. ``steps:N`` gives every learned model N optimiser steps of the network that generates the data, at the
same batch size (so every model sees N x batch training rows):
  ehrdiff   N denoiser updates (AdamW, warm-up min(preset warm-up, N/4) then cosine decay, EMA weights).
  emrwgan   N generator updates; each follows ``n_critic`` (default 5) critic updates, which are not counted.
  corgan    N generator updates, ``n_critic`` (default 5) critic updates each, not counted; plus N/10
            autoencoder pre-training steps before them, not counted either.
  medgan    N generator updates, one discriminator update each (not counted); plus N/10 autoencoder
            pre-training steps (medGAN's paper: 100 pre-training epochs for 1,000 training epochs).
  marginals, resample   nothing is trained; the budget does not apply.
How the runner treats a model (the budget or none, pre-training steps, the --quick settings, variants such as
ehrdiff-paper, membership of the default experiment) is the model class's own ``experiment`` declaration
(``ehrdiff.models.ExperimentRole``): a model registered later, a plug-in included, joins without a list to edit.
``epochs:E`` is the same with N = E x (training rows // batch + 1), the official EHRDiff code's epoch (its full
schedule is epochs:5000); the data-scale runs get the N of the full training set.
Wall-clock budgets (``minutes:M``) are refused: the training loop (``ehrdiff.training.run_steps``, which every
learned model trains through) stops after a number of steps, not on a time limit, and a budget the runner could not
enforce the same way for every model would not be a fair one. Each run's training seconds are recorded instead,
so the compute a step budget cost is visible per model.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ehrdiff.errors import DataError, EhrdiffError

if TYPE_CHECKING:
    from ehrdiff.models import ExperimentRole

PRETRAINING_SHARE = 10                              # autoencoder steps = N // 10 (medGAN's 100 : 1,000 epochs)
PAPER_BATCH = 1024                                  # the paper's MIMIC batch: the default for every learned model
QUICK_BUDGET = "steps:50"
QUICK_BATCH = 64
# --quick: small networks (each model's ExperimentRole.quick) and a lighter evaluation too (fewer boosting rounds and
# L-BFGS iterations; same metrics)
QUICK_EVALUATION: dict[str, Any] = {"discriminator_iterations": 20, "dimwise_iterations": 10}


# ---- datasets ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str                              # a key of ehrdiff.data.sources.SOURCES
    inputs: dict[str, str]                   # prepare() keyword -> file under the data root
    options: dict[str, Any]                  # other prepare() keywords
    preset: str                              # the paper's EHRDiff preset for this kind of data
    description: str
    label: str | None                        # what the TSTR label means (None: no label, no TSTR)
    download: str                            # where a user gets the input files
    bundled: dict[str, str] = field(default_factory=dict)   # inputs shipped with ehrdiff (used without a data root)

    def expected_files(self) -> str:
        return ", ".join(self.inputs.values())


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("uci-diabetes", "uci-diabetes", {"path": "uci-diabetes-130-us-hospitals/dataset_diabetes.zip"},
                {"level": "patient"}, "paper-mimic",
                "UCI Diabetes 130-US hospitals, patient level: 881 three-digit ICD-9 categories",
                "readmitted within 30 days (any encounter)", "https://doi.org/10.24432/C5230J"),
    DatasetSpec("mimic-iii-demo", "mimic", {"diagnoses": "mimic-iii-demo-1.4/diagnoses_icd.csv.gz"},
                {"level": "patient"}, "paper-mimic",
                "MIMIC-III demo, patient level: ICD-9 categories (100 patients, all deceased: a biased cohort)",
                None, "https://doi.org/10.13026/C2HM2Q"),
    DatasetSpec("mimic-iv-demo", "mimic", {"diagnoses": "mimic-iv-demo-2.2/hosp/diagnoses_icd.csv.gz"},
                {"level": "patient", "icd10": "keep"}, "paper-mimic",
                "MIMIC-IV demo, patient level: ICD-9 and ICD-10 categories (100 patients)",
                None, "https://doi.org/10.13026/dp1f-ex47", {"diagnoses": "demo_data/diagnoses_icd.csv.gz"}),
    DatasetSpec("cinc2012", "cinc2012", {"records": "physionet-challenge-2012/set-a.tar.gz",
                                         "outcomes": "physionet-challenge-2012/Outcomes-a.txt"},
                {}, "paper-cinc", "PhysioNet/CinC 2012 set-a: one row per ICU stay, 227 descriptors and summaries",
                "in-hospital death", "https://physionet.org/content/challenge-2012/"),
    DatasetSpec("ptb", "ptb", {"normal": "ptbdb-heartbeat-kaggle-sample/ptbdb_normal_sample.csv",
                               "abnormal": "ptbdb-heartbeat-kaggle-sample/ptbdb_abnormal_sample.csv"},
                {}, "paper-ecg",
                "PTB heartbeats: 187 samples per beat (the default files are a 200-beat sample: give the full "
                "ptbdb_normal.csv / ptbdb_abnormal.csv with --input normal=... --input abnormal=...)",
                "abnormal beat", "https://www.kaggle.com/datasets/shayanfazeli/heartbeat"),
)}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise EhrdiffError(f"unknown dataset '{name}' (choose one of {', '.join(DATASETS)})")
    return DATASETS[name]


def default_data_root(cwd: Path | None = None) -> Path | None:
    """``../shared/data`` relative to the working directory when it exists (this project's layout), else None."""
    candidate = (cwd or Path.cwd()) / ".." / "shared" / "data"
    return candidate.resolve() if candidate.is_dir() else None


def resolve_inputs(spec: DatasetSpec, data_root: Path | None, overrides: dict[str, str]) -> dict[str, Path]:
    """The absolute input files of ``spec``: ``overrides`` (KEY -> path) first, the rest under ``data_root``."""
    unknown = sorted(set(overrides) - set(spec.inputs))
    if unknown:
        raise EhrdiffError(f"--input {unknown[0]}=...: dataset '{spec.name}' takes the inputs "
                           f"{', '.join(spec.inputs)}")
    needs_root = [k for k in spec.inputs if k not in overrides]
    if data_root is None and needs_root and all(k in spec.bundled for k in needs_root):
        package = Path(__file__).resolve().parents[1]            # the copy shipped with ehrdiff (demo data)
        overrides = {**overrides, **{k: str(package / spec.bundled[k]) for k in needs_root}}
        needs_root = []
    if needs_root and data_root is None:
        raise DataError(f"no data folder: ../shared/data does not exist here; pass --data-root PATH, a folder "
                        f"holding {spec.expected_files()} (download: {spec.download})")
    resolved: dict[str, Path] = {}
    for key, relative in spec.inputs.items():
        path = Path(overrides[key]) if key in overrides else Path(data_root) / relative
        if not path.exists():
            where = f"--input {key}=" if key in overrides else f"the data root {data_root}"
            raise DataError(f"{path}: not found (from {where}); dataset '{spec.name}' needs "
                            f"{spec.expected_files()} under --data-root (download: {spec.download})")
        resolved[key] = path.resolve()
    return resolved


# ---- budget ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """``steps`` optimiser steps at ``batch_size``; or ``epochs`` passes, converted to steps once the training
    size is known with the official code's epoch length (rows // batch + 1 batches)."""

    steps: int | None
    batch_size: int | None = None         # None: PAPER_BATCH, or the training rows when there are fewer
    epochs: int | None = None

    def resolved(self, training_rows: int) -> "Budget":
        """The budget with its batch size and step count fixed (both may depend on the training size)."""
        batch = self.batch_size if self.batch_size is not None else max(1, min(PAPER_BATCH, training_rows))
        steps = self.steps if self.epochs is None else self.epochs * (training_rows // batch + 1)
        return Budget(steps, batch, self.epochs)

    def describe(self) -> str:
        given = f"epochs:{self.epochs} = {self.steps:,} steps" if self.epochs else f"steps:{self.steps}"
        return (f"{given} at batch {self.batch_size}: {self.steps:,} optimiser steps of each learned model's "
                "generating network (EHRDiff denoiser, GAN generator); GAN critic updates and autoencoder "
                "pre-training are not counted (per model below); marginals and resample train nothing")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "epochs" if self.epochs else "steps", "steps": self.steps, "epochs": self.epochs,
                "batch_size": self.batch_size,
                "counted": "optimiser steps of the generating network (EHRDiff denoiser, GAN generator)",
                "not_counted": "GAN critic / discriminator updates; medGAN / CorGAN autoencoder pre-training "
                               f"(steps / {PRETRAINING_SHARE})"}


# ---- models: each model class declares how the runner treats it (ehrdiff.models.ExperimentRole) -------------
def experiment_role(model: str) -> tuple[str, "ExperimentRole"]:
    """(registered model, ExperimentRole) behind an experiment's model name (a variant such as ehrdiff-paper
    names another model's class); EhrdiffError listing the known names."""
    from ehrdiff.models import experiment_models

    known = experiment_models()
    if model not in known:
        raise EhrdiffError(f"unknown model '{model}' (choose from {', '.join(sorted(known))})")
    return known[model]


def registry_name(model: str) -> str:
    """The registered model behind an experiment's model name."""
    return experiment_role(model)[0]


def default_models() -> tuple[str, ...]:
    """The experiment's models when --models is not given: every registered one whose role says ``default``, in
    registration order (the built-in ones: ehrdiff, ehrdiff-paper, medgan, emrwgan, corgan, marginals, resample)."""
    from ehrdiff.models import experiment_models

    return tuple(name for name, (_, role) in experiment_models().items() if role.default)


def _setting_defaults(cls: type) -> dict[str, Any]:
    """A model's default settings: its ``Config`` dataclass's fields, else its constructor's keyword defaults."""
    import inspect

    config = getattr(cls, "Config", None)
    if dataclasses.is_dataclass(config):
        return {f.name: f.default for f in dataclasses.fields(config)}
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def steps_of(model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What ``settings`` make ``model`` run: counted steps, and the critic / pre-training steps that are not. The
    network a counted step updates is named where it is known: EHRDiff's denoiser, the generator of a model with
    a critic (``n_critic``) or discriminator (``d_steps``); other models' steps are just steps."""
    from ehrdiff.models import REGISTRY
    from ehrdiff.models.ehrdiff import EHRDiff

    name, role = experiment_role(model)
    if not role.trains:
        return {"counted": 0, "text": "nothing trained"}
    defaults = _setting_defaults(REGISTRY[name])

    def value(key: str):
        return settings.get(key, defaults.get(key))

    steps = value("steps")
    out: dict[str, Any] = {"counted": steps, "batch_size": value("batch_size")}
    per_step = value("n_critic") or value("d_steps")
    network = "denoiser " if issubclass(REGISTRY[name], EHRDiff) else "generator " if per_step else ""
    parts = [f"{steps:,} {network}steps" if isinstance(steps, int) else "its own number of steps"]
    if per_step:
        critic = "critic" if value("n_critic") else "discriminator"
        out["critic_steps"] = per_step * steps
        parts.append(f"{per_step * steps:,} {critic} steps ({per_step} per generator step, not counted)")
    if role.pretraining and value(role.pretraining):
        out["pretraining_steps"] = value(role.pretraining)
        parts.append(f"{value(role.pretraining):,} autoencoder pre-training steps (not counted)")
    out["text"] = ", ".join(parts)
    return out


def pretraining_steps(steps: int) -> int:
    return max(1, steps // PRETRAINING_SHARE)


def parse_budget(text: str, batch_size: int | None = None) -> Budget:
    """``steps:N`` or ``epochs:E`` -> Budget. ``minutes:M`` is refused with the reason (see the module text)."""
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind in ("minutes", "min", "time", "wall"):
        raise EhrdiffError(f"--budget {text}: wall-clock budgets are not supported (training stops after a number "
                           "of steps, not on a time limit); give steps:N, e.g. steps:5000. results.json records each "
                           "run's training seconds, so a first short run tells how many steps fit in M minutes")
    if kind not in ("steps", "epochs") or not sep or not re.fullmatch(r"\d[\d_,]*", value.strip()):
        raise EhrdiffError(f"--budget expects steps:N or epochs:E with a positive whole number (e.g. steps:5000), "
                           f"got '{text}'")
    number = int(value.strip().replace("_", "").replace(",", ""))
    if number <= 0:
        raise EhrdiffError(f"--budget {text}: the number of {kind} must be positive")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size <= 0):
        raise EhrdiffError(f"--batch-size must be a positive whole number, got {batch_size!r}")
    return Budget(number, batch_size) if kind == "steps" else Budget(None, batch_size, number)


def model_settings(model: str, spec: DatasetSpec, budget: Budget, seed: int, *, quick: bool = False,
                   device: str = "auto", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Constructor keywords for ``model`` under ``budget`` (``overrides`` last: what the user set explicitly)."""
    _, role = experiment_role(model)
    if not role.trains:
        settings: dict[str, Any] = {"seed": seed}
    else:
        settings = {"steps": budget.steps, "batch_size": budget.batch_size, "seed": seed, "device": device,
                    "checkpoint_every": min(budget.steps, 500)}
        if role.dataset_preset:
            settings["preset"] = spec.preset
        if role.pretraining:
            settings[role.pretraining] = pretraining_steps(budget.steps)
        if quick:
            settings.update(role.quick)
    settings.update(overrides or {})
    return settings


# ---- the whole experiment --------------------------------------------------------------------------------------
@dataclass
class ExperimentConfig:
    dataset: str
    output: Path
    models: tuple[str, ...] = field(default_factory=default_models)
    seeds: int = 3
    budget: Budget | None = None          # None: only with quick (steps:50 at batch 64)
    quick: bool = False
    data_root: Path | None = None
    inputs: dict[str, str] = field(default_factory=dict)     # KEY -> path overriding a file under data_root
    fractions: tuple[float, ...] = ()     # data-scale experiment: shares of the training subjects (1.0 = main runs)
    resume: bool = False
    device: str = "auto"                  # models (and nearest neighbours in the evaluation when CUDA is used)
    threads: int | None = None            # torch / BLAS threads while the experiment runs
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)   # per-model setting overrides
    evaluation: dict[str, Any] = field(default_factory=dict)            # EvaluationConfig overrides
    progress: bool = True
    command: str | None = None            # the command line, recorded in results
    shard: tuple[int, int] | None = None  # (I, N): train and sample only runs I, I+N, ...; no evaluation

    def check(self) -> "ExperimentConfig":
        dataset_spec(self.dataset)
        if not self.models:
            raise EhrdiffError("--models: give at least one model")
        # a misspelt model in --set would otherwise leave its setting silently unused
        for option, names in (("--models", self.models), ("--set", self.settings)):
            for name in names:
                try:
                    experiment_role(name)
                except EhrdiffError as exc:
                    raise EhrdiffError(f"{option}: {exc}") from None
        if len(set(self.models)) != len(self.models):
            raise EhrdiffError("--models: a model is named twice")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise EhrdiffError(f"--seeds must be a positive whole number, got {self.seeds!r}")
        for fraction in self.fractions:
            if not 0 < fraction <= 1:
                raise EhrdiffError(f"--fractions: each share of the training data must be in (0, 1], got {fraction}")
        if self.budget is None and not self.quick:
            raise EhrdiffError("state the compute budget: --budget steps:N (the same for every model), "
                               "or --quick for a smoke test")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise EhrdiffError(f"--device {self.device}: PyTorch sees no CUDA GPU here (use --device auto or cpu)")
        elif self.device not in ("auto", "cpu"):
            raise EhrdiffError(f"--device must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        if self.shard is not None:
            index, count = self.shard
            if not 0 <= index < count:
                raise EhrdiffError(f"--shard I/N needs 0 <= I < N, got {index}/{count}")
        unknown = sorted(set(self.settings) - set(self.models))
        if unknown:
            raise EhrdiffError(f"--set {unknown[0]}.KEY=VALUE names a model that is not in --models")
        return self

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.update(output=str(self.output), data_root=str(self.data_root) if self.data_root else None,
                      budget=self.budget.to_dict() if self.budget else None, models=list(self.models),
                      fractions=list(self.fractions))
        values.pop("progress")
        return values


__all__ = ["DATASETS", "Budget", "DatasetSpec", "ExperimentConfig", "dataset_spec", "default_data_root",
           "default_models", "experiment_role", "model_settings", "parse_budget", "pretraining_steps",
           "registry_name", "resolve_inputs", "steps_of"]
