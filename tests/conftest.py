"""Shared test data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ehrdiff.models.persistence import METADATA_FILE, SAVE_FIELDS, content_hash
from ehrdiff.privacy.secret import given_noise_seed

BLOCK_ON_CODE_RATE = 0.85   # P(code fires | its block is on)
BLOCK_OFF_CODE_RATE = 0.03  # P(code fires | its block is off)


def block_binary_data(n_rows: int, n_blocks: int, block_size: int, seed: int) -> pd.DataFrame:
    """Patients x codes with block structure: each block has a latent on/off state per patient (on with a
    block-specific probability between 0.15 and 0.45), and its codes fire together when it is on. Independent
    marginals cannot reproduce the within-block co-occurrence; a model that learns structure can.
    Columns are named ``b{block}_c{code}`` and hold 0/1 ints."""
    rng = np.random.default_rng(seed)
    p_on = np.linspace(0.15, 0.45, n_blocks) if n_blocks > 1 else np.array([0.3])
    on = rng.random((n_rows, n_blocks)) < p_on                      # latent state per patient and block
    rate = np.where(on, BLOCK_ON_CODE_RATE, BLOCK_OFF_CODE_RATE)    # (rows, blocks)
    fires = rng.random((n_rows, n_blocks, block_size)) < rate[:, :, None]
    columns = [f"b{b}_c{c}" for b in range(n_blocks) for c in range(block_size)]
    return pd.DataFrame(fires.reshape(n_rows, n_blocks * block_size).astype(int), columns=columns)


def edit_model_json(folder, edit, *, rehash: bool = True) -> None:
    """Change a saved model's model.json by ``edit(metadata)``; ``rehash``: recompute its content checksum, as a
    crafted file would."""
    path = folder / METADATA_FILE
    metadata = json.loads(path.read_text())
    edit(metadata)
    if rehash:
        metadata["content_sha256"] = content_hash({k: v for k, v in metadata.items() if k not in SAVE_FIELDS})
    path.write_text(json.dumps(metadata))


@pytest.fixture(scope="session", autouse=True)
def fixed_privacy_noise():
    """Private runs' noise from one given seed (privacy/secret.py), so that a test's noisy counts are the same at
    every run; the tests of the secret draw itself remove the variable (monkeypatch.delenv)."""
    with given_noise_seed(0):
        yield


@pytest.fixture
def one_thread():
    """Run a test's torch work on one thread (faster and steadier than two on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
