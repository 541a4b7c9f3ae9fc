"""The one check of a table's label column, shared by ``ehrdiff prepare`` (before it writes the split) and
``ehrdiff train`` (before it trains): at most one label, named ``label``, with exactly two classes and no missing
value. A table that one command refuses is refused by the other with the same line.
"""

from __future__ import annotations

from ehrdiff.data.table import Table
from ehrdiff.errors import DataError

LABEL = "label"


def check_label(table: Table, source: str) -> None:
    """Raise DataError naming ``source`` when the table's label column is not one binary column named ``label``
    with a value in every row; a table without a label passes."""
    labels = table.columns_of("label")
    if not labels:
        return
    if labels != [LABEL]:
        raise DataError(f"{source}: the label column must be named '{LABEL}' (found {', '.join(labels)}); "
                        "rename it or give it another kind")
    values = table.frame[LABEL]
    if values.isna().any():
        raise DataError(f"{source}: column '{LABEL}' is missing in row {int(values.isna().argmax())}; "
                        "every row needs a label (drop those rows)")
    classes = sorted(values.unique().tolist(), key=str)
    if len(classes) < 2:
        raise DataError(f"{source}: column '{LABEL}' has one class only ({classes[0]!r} in all {len(values)} rows); "
                        "a label needs two classes (check the label definition or drop the label)")
    if len(classes) > 2:
        shown = ", ".join(map(repr, classes[:5]))
        raise DataError(f"{source}: column '{LABEL}' has {len(classes)} classes ({shown}); the label must be binary "
                        "(recode it to two classes, or declare the column categorical)")
