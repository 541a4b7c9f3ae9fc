"""Checkpoints written by ehrdiff 0.1 (tests/fixtures/checkpoints_v0_1, the pinned tiny runs of
tests/fixtures/pinned_samples.py): EHRDiff's resume into the same model; a GAN's is refused with one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ehrdiff.errors import EhrdiffError
from ehrdiff.models import REGISTRY
from ehrdiff.models.ehrdiff.config import ADDED_LATER
from ehrdiff.training import CHECKPOINT_FILE, MinibatchStep

from fixtures.pinned_samples import ROWS, cases, pinned_table

OLD = Path(__file__).parent / "fixtures" / "checkpoints_v0_1"

pytestmark = pytest.mark.usefixtures("one_thread")
OLD_DEFAULT = ADDED_LATER      # each setting added since 0.1, at the value that does what 0.1 did


def pinned_model(name: str, **extra):
    model_name, settings, _ = cases()[name]
    settings = dict(settings, **extra)
    if model_name == "ehrdiff":
        return REGISTRY["ehrdiff"](settings.pop("preset"), **settings)
    return REGISTRY[model_name](**settings)


def test_an_old_ehrdiff_checkpoint_resumes_into_the_same_model(tmp_path, monkeypatch):
    shutil.copy(OLD / "default-checkpoint.safetensors", tmp_path / CHECKPOINT_FILE)
    # the default of 0.1 modelled continuous columns as the settings added since at their old values do (issue 20
    # changed the default preset's): with those, the same run
    fresh = pinned_model("default", **OLD_DEFAULT).fit(pinned_table(), progress=False)
    # the checkpoint is of the finished 30-step run: resuming it takes no step and gives that run's model
    def no_step(self, step):
        raise AssertionError(f"step {step} taken: the checkpoint was not resumed")

    monkeypatch.setattr(MinibatchStep, "__call__", no_step)
    resumed = pinned_model("default", **OLD_DEFAULT).fit(pinned_table(), checkpoint_dir=tmp_path, resume=True,
                                                         progress=False)
    for (key, a), b in zip(fresh.denoiser_.state_dict().items(), resumed.denoiser_.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), key
    assert resumed.sample(ROWS, seed=11).equals(fresh.sample(ROWS, seed=11))
    # and an old checkpoint of another run is refused, as a new one would be
    other = {k: v for k, v in cases()["default"][1].items() if k != "preset"} | OLD_DEFAULT | {"lr": 5e-4}
    with pytest.raises(EhrdiffError, match="different run"):
        REGISTRY["ehrdiff"]("default", **other).fit(pinned_table(), checkpoint_dir=tmp_path, resume=True,
                                                    progress=False)


def test_an_old_gan_checkpoint_is_refused_with_one_line(tmp_path):
    shutil.copy(OLD / "medgan-gan_checkpoint.safetensors", tmp_path / "gan_checkpoint.safetensors")
    with pytest.raises(EhrdiffError) as caught:
        pinned_model("medgan").fit(pinned_table(), checkpoint_dir=tmp_path, resume=True, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "gan_checkpoint.safetensors" in message and "without --resume" in message
    # without --resume the folder is simply trained into
    pinned_model("medgan").fit(pinned_table(), checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT_FILE).exists()
