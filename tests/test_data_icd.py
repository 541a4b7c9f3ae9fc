"""ICD code rules, checked against hand-written examples (codes are strings; leading zeros matter)."""

import pandas as pd
import pytest

from ehrdiff.data import icd


def run(rule, codes):
    categories, bad = rule(pd.Series(codes, dtype=object))
    return [None if pd.isna(c) else c for c in categories], bad.tolist()


def test_mimic_icd9_rule_keeps_leading_zeros_and_e_codes_four_characters():
    cats, bad = run(icd.icd9_diagnosis, ["0389", "03811", "E8497", "E870", "V5861", "4019", " 250.01 ", None])
    assert cats == ["038", "038", "E849", "E870", "V58", "401", "250", None]
    assert bad == [False] * 8


@pytest.mark.parametrize("code", ["12", "X123", "E12", "V1", "4019A", "abc", "40-19"])
def test_mimic_icd9_rule_flags_unreadable_codes(code):
    cats, bad = run(icd.icd9_diagnosis, [code])
    assert cats == [None] and bad == [True]


def test_uci_rule_zero_pads_the_integer_part():
    cats, bad = run(icd.icd9_diagnosis_uci, ["250.83", "8", "38", "V57", "V4", "E909", "E9", "401.1", "996.01", None])
    assert cats == ["250", "008", "038", "V57", "V04", "E909", "E009", "401", "996", None]
    assert not any(bad)


@pytest.mark.parametrize("code", ["?", "250.833", "2500", "V123", "abc", "", "1.2.3"])
def test_uci_rule_flags_unreadable_codes(code):
    cats, bad = run(icd.icd9_diagnosis_uci, [code])
    assert cats == [None] and bad == [True]


def test_procedure_and_icd10_rules():
    assert run(icd.icd9_procedure, ["3961", "966", "0039"])[0] == ["39", "96", "00"]
    assert run(icd.icd10_diagnosis, ["I10", "E119", "Z87891", "e11.9"])[0] == ["I10", "E11", "Z87", "E11"]
    assert run(icd.icd10_procedure, ["0DTJ4ZZ", "02HV33Z"])[0] == ["0DT", "02H"]
    assert run(icd.icd10_diagnosis, ["123"])[1] == [True]


def test_rules_keep_the_index_and_repeat_results_for_repeated_codes():
    raw = pd.Series(["0389", "0389", "4019"], index=[7, 3, 9], dtype=object)
    categories, bad = icd.icd9_diagnosis(raw)
    assert list(categories.index) == [7, 3, 9] and list(categories) == ["038", "038", "401"]
