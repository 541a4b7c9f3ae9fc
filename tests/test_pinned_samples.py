"""Behaviour pinned across refactorings: each preset and baseline, trained on one fixed tiny table, samples the
rows recorded in tests/fixtures/pinned_samples.json (see tests/fixtures/pinned_samples.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.pinned_samples import PINNED_FILE, cases, sample_case

PINNED = json.loads(PINNED_FILE.read_text())


def test_every_case_is_pinned():
    assert sorted(PINNED) == sorted(cases())


@pytest.mark.parametrize("name", sorted(cases()))
def test_samples_are_the_pinned_rows(name):
    rows = np.array(sample_case(name))
    pinned = np.array(PINNED[name])
    assert rows.shape == pinned.shape
    # 0/1 and category columns exactly; continuous values to float rounding (other processors sum differently)
    np.testing.assert_allclose(rows, pinned, rtol=1e-4, atol=1e-4)
