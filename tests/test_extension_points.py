"""Extension by registration (docs/architecture.md): a model from another package through the ``ehrdiff.models``
entry point, a sampler by one decorated function, and scikit-learn's get_params / set_params."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ehrdiff.errors import EhrdiffError
from ehrdiff.models import REGISTRY, build_model
from ehrdiff.models.ehrdiff import EHRDiff

from conftest import block_binary_data

PLUGIN = Path(__file__).parent / "plugin_example"
CLI = [sys.executable, "-c", "import sys; from ehrdiff.cli import main; sys.exit(main(sys.argv[1:]))"]
MIMIC_DEMO = Path(__file__).resolve().parents[1] / "src" / "ehrdiff" / "demo_data" / "diagnoses_icd.csv.gz"


def run_ehrdiff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The ``ehrdiff`` command in a fresh process that has the plug-in package on its path (as if installed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_a_plug_in_model_trains_samples_and_runs_in_an_experiment(tmp_path):
    data = tmp_path / "train.csv"
    block_binary_data(80, 2, 3, seed=0).to_csv(data, index=False)
    trained = run_ehrdiff("-q", "train", str(data), "--model", "toy", "--set", "spread=0.2", "-o", "run",
                          cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    sampled = run_ehrdiff("-q", "sample", "run", "-n", "25", "-o", "synthetic.csv", cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert len((tmp_path / "synthetic.csv").read_text().splitlines()) == 26
    experiment = run_ehrdiff("-q", "experiment", "paper", "--dataset", "mimic-iv-demo", "--quick", "--seeds", "1",
                             "--models", "toy,marginals", "--input", f"diagnoses={MIMIC_DEMO}", "-o", "exp",
                             cwd=tmp_path)
    assert experiment.returncode == 0, experiment.stderr
    assert (tmp_path / "exp" / "runs" / "toy" / "seed-0" / "model.json").is_file()
    assert "toy" in (tmp_path / "exp" / "results.md").read_text()
    # without the package the model is unknown, and says how to choose
    missing = subprocess.run([*CLI, "-q", "train", str(data), "--model", "toy",
                              "-o", "run2"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert missing.returncode != 0 and "unknown model 'toy'" in missing.stderr


def test_a_new_sampler_is_one_registered_function():
    from ehrdiff.diffusion import SAMPLERS
    from ehrdiff.diffusion.sampler import sampler

    calls = []

    @sampler("euler-test")
    def euler(denoise, x, sigmas, generator=None):
        for i in range(len(sigmas) - 1):
            x = x + (sigmas[i + 1] - sigmas[i]) * (x - denoise(x, sigmas[i])) / sigmas[i]
            calls.append(i)
        return x

    try:
        model = EHRDiff("cpu-fast", steps=5, hidden_dims=(16,), embedding_features=8, embedding_width=8,
                        sampler="euler-test", num_noise_levels=4)
        model.fit(block_binary_data(40, 2, 2, seed=0), progress=False).sample(5, seed=0)
        assert len(calls) > 0 and len(calls) % 4 == 0
    finally:
        del SAMPLERS["euler-test"]
    with pytest.raises(EhrdiffError, match="setting 'sampler' must be 'heun' or 'ancestral'"):
        EHRDiff(sampler="euler-test")


def test_get_params_and_set_params_follow_scikit_learn():
    model = EHRDiff("cpu-fast", steps=7, lr=1e-4)
    assert model.get_params() == {"preset": "cpu-fast", "steps": 7, "lr": 1e-4}
    copy = type(model)(**model.get_params())
    assert copy.config.to_dict() == model.config.to_dict()
    assert model.set_params(steps=9) is model and model.config.steps == 9 and model.config.lr == 1e-4
    with pytest.raises(EhrdiffError, match="unknown EHRDiff setting"):
        model.set_params(learning_rate=1)
    gan = build_model("medgan", {"steps": 3, "batch_size": 8})
    assert gan.get_params()["steps"] == 3 and gan.get_params()["noise_dim"] == 128    # every setting
    assert type(gan)(**gan.get_params()).get_params() == gan.get_params()
    # a fitted model: sampling settings only (EHRDiff), nothing for the others
    table = block_binary_data(40, 2, 2, seed=0)
    model = EHRDiff("cpu-fast", steps=3, hidden_dims=(8,), embedding_features=8, embedding_width=8).fit(
        table, progress=False)
    assert model.set_params(num_noise_levels=6).config.num_noise_levels == 6
    with pytest.raises(EhrdiffError, match="changes training"):
        model.set_params(lr=1.0)
    fitted = REGISTRY["marginals"]().fit(table)
    with pytest.raises(EhrdiffError, match="fitted"):
        fitted.set_params(seed=3)


def test_one_fitted_check_for_every_model():
    for name, cls in REGISTRY.items():
        model = cls()
        assert not model.is_fitted(), name
        with pytest.raises(RuntimeError, match="not fitted"):
            model.sample(3)
