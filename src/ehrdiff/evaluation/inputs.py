"""From user tables to the aligned sparse matrices every metric works on.

The training table fixes the columns, their kinds and the encoding (``TableEncoder`` for continuous and
categorical columns; binary code columns are kept as 0/1). Test and synthetic tables are checked against it column
by column: a column that is missing, or that holds values its training kind does not allow, is left out of that
dataset's metrics with a warning (one line naming the column, row and value), so one bad column never stops the
report. Id columns are ignored; label-kind columns are never features.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrdiff.data.encoding import ColumnCoding, TableEncoder, MISSING_CATEGORY, MISSING_SUFFIX
from ehrdiff.data.io import check_spans
from ehrdiff.data.io import plain_value as _show  # numpy scalars read 0.7, not np.float64(0.7)
from ehrdiff.data.rules import Rule
from ehrdiff.data.table import ID_COLUMN_NAMES, Table
from ehrdiff.errors import DataError

ROW_CHUNK = 16_384  # rows converted to dense at a time (bounds the transient memory of wide code tables)


@dataclass(frozen=True)
class Layout:
    """The encoded columns shared by every matrix of one evaluation (codes first, then the rest)."""

    names: list[str]                 # encoded column names
    source: np.ndarray               # index into ``user_names`` of each encoded column
    user_names: list[str]            # user feature columns (no ids, no labels)
    user_kinds: list[str]
    codes: np.ndarray                # bool per encoded column: a binary-kind column (a "code")
    continuous: np.ndarray           # bool per encoded column: a scaled continuous value
    categorical: np.ndarray          # bool per encoded column: a one-hot column
    label: str | None = None
    label_classes: tuple = ()
    ignored: frozenset = frozenset()  # training columns that are never features (ids, other labels)
    rules: tuple[Rule, ...] = ()      # the training table's declared rules (data/rules.py), checked on raw rows

    @property
    def width(self) -> int:
        return len(self.names)

    @property
    def hamming(self) -> bool:
        """Every encoded column is 0/1, so squared Euclidean distance is the Hamming distance."""
        return not bool(self.continuous.any())

    def restrict(self, keep: np.ndarray) -> "Layout":
        """The layout of the encoded columns where ``keep`` is True."""
        return replace(self, names=[n for n, k in zip(self.names, keep) if k], source=self.source[keep],
                       codes=self.codes[keep], continuous=self.continuous[keep], categorical=self.categorical[keep])


@dataclass
class Encoded:
    """One dataset in the layout's columns: ``X`` (rows x encoded columns, float32 CSR) and label class indices;
    ``frame``: the same rows as given (the declared rules compare raw values, which scaling would round)."""

    X: sp.csr_matrix
    y: np.ndarray | None = None      # class index per row (into Layout.label_classes); None when unavailable
    frame: pd.DataFrame | None = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def rows(self, index: np.ndarray) -> "Encoded":
        return Encoded(self.X[index], None if self.y is None else self.y[index],
                       None if self.frame is None else self.frame.iloc[index].reset_index(drop=True))

    def columns(self, keep: np.ndarray) -> "Encoded":
        return Encoded(self.X[:, np.flatnonzero(keep)].tocsr(), self.y, self.frame)


@dataclass
class Prepared:
    """A dataset after checking: its matrix, the user columns it can be compared on, and what was wrong."""

    data: Encoded
    usable: np.ndarray               # bool per user feature column
    warnings: list[str]
    label_problem: str | None        # why the label is unusable in this dataset (None when fine or not needed)


def as_frame(data, source: str) -> pd.DataFrame:
    if isinstance(data, Table):
        return data.frame
    if isinstance(data, pd.DataFrame):
        frame = data.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        return frame
    if isinstance(data, np.ndarray) and data.ndim == 2:
        return pd.DataFrame(data, columns=[f"x{i}" for i in range(data.shape[1])])
    raise DataError(f"{source}: expected a Table, DataFrame or 2-D numpy matrix, got {type(data).__name__}")


def as_train_table(data) -> Table:
    if isinstance(data, Table):
        data.validate("train")
        table = data
    else:
        table = Table.from_frame(as_frame(data, "train"), source="train")
    check_spans(table, "train")
    return table


DEFAULT_LABEL = "label"   # evaluate's default label: it may be absent (then no utility metrics); another name may not


def build_layout(train: Table, label: str | None) -> tuple[Layout, list[ColumnCoding]]:
    """The evaluation's columns from the training table; returns the layout and the non-binary codings."""
    check_label_name(train, label)
    chosen = label if label is not None and label in train.frame.columns else None
    if chosen is None and label is not None and train.columns_of("label"):
        chosen = train.columns_of("label")[0]
    features = [c for c in train.columns if train.kinds[c] not in ("id", "label") and c != chosen]
    if not features:
        raise DataError("train: no feature columns to evaluate (only ids and labels)")
    binary = [c for c in features if train.kinds[c] == "binary"]
    other = [c for c in features if train.kinds[c] != "binary"]
    codings = []
    if other:
        codings = TableEncoder().fit(Table(train.frame[other], {c: train.kinds[c] for c in other})).codings_
    user_names = binary + other
    position = {c: i for i, c in enumerate(user_names)}
    names, source, kind_of = list(binary), [position[c] for c in binary], ["code"] * len(binary)
    for coding in codings:
        for name in coding.encoded_names():
            names.append(name)
            source.append(position[coding.name])
            kind_of.append("continuous" if coding.coding == "continuous" and not name.endswith(MISSING_SUFFIX)
                           else "onehot" if coding.coding == "onehot" else "indicator")
    kind_of = np.array(kind_of)
    classes: tuple = ()
    if chosen is not None:
        values = train.frame[chosen]
        if values.isna().any():
            raise DataError(f"train: label column '{chosen}' row {int(values.isna().to_numpy().argmax())} is missing; "
                            "every training row needs a label")
        classes = tuple(sorted(pd.unique(values).tolist(), key=lambda v: (isinstance(v, str), v)))
    layout = Layout(names=names, source=np.array(source, dtype=np.int64), user_names=user_names,
                    user_kinds=[train.kinds[c] for c in user_names], codes=kind_of == "code",
                    continuous=kind_of == "continuous", categorical=kind_of == "onehot", label=chosen,
                    label_classes=classes,
                    ignored=frozenset(c for c in train.columns if train.kinds[c] in ("id", "label")),
                    rules=train.rules)
    return layout, codings


def check_label_name(train: Table, label: str | None) -> None:
    """A label named other than the default must be a training column: a misspelt one is refused, not ignored."""
    if label is None or label == DEFAULT_LABEL or label in train.frame.columns:
        return
    raise DataError(f"train: no column '{label}' to use as the label (columns: {_names(train.columns, 10)}); "
                    "name one of them as the label (--label), or leave the label out")


def prepare(data, layout: Layout, codings: list[ColumnCoding], source: str) -> Prepared:
    """Check ``data`` against the training layout and encode it; never raises for a bad column."""
    frame = as_frame(data, source)
    if len(frame) == 0:
        raise DataError(f"{source}: the table has no rows")
    warnings: list[str] = []
    present = np.array([c in frame.columns for c in layout.user_names])
    if not present.all():
        missing = [c for c, p in zip(layout.user_names, present) if not p]
        warnings.append(f"{source}: {len(missing)} training column(s) missing ({_names(missing)}); "
                        "its metrics use the shared columns only")
    known = set(layout.user_names) | {layout.label} | layout.ignored
    own_ids = {c for c, k in data.kinds.items() if k == "id"} if isinstance(data, Table) else set()
    extra = [c for c in frame.columns if c not in known and c not in own_ids and c.lower() not in ID_COLUMN_NAMES]
    if extra:
        warnings.append(f"{source}: {len(extra)} column(s) not in the training data are ignored ({_names(extra)})")
    usable = present.copy()
    position = {c: j for j, c in enumerate(layout.user_names)}
    n_codes = int(layout.codes.sum())
    code_names = layout.user_names[:n_codes]
    code_block, bad_codes = _encode_codes(frame, [c for c, p in zip(code_names, present[:n_codes]) if p], source)
    if bad_codes:
        warnings.append(bad_codes[1])
        usable[[position[c] for c in bad_codes[0]]] = False
    blocks = [_scatter_columns(code_block, [c for c, p in zip(code_names, present[:n_codes]) if p], code_names)]
    for coding in codings:
        j = position[coding.name]
        block = None
        if present[j]:
            block, problem = _encode_other(frame[coding.name], coding, source)
            if problem:
                warnings.append(problem)
                usable[j] = False
                block = None
        blocks.append(sp.csr_matrix((len(frame), coding.width), dtype=np.float32) if block is None else block)
    X = sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else sp.csr_matrix((len(frame), 0), np.float32)
    y, label_problem = _encode_label(frame, layout, source)
    if not usable.any():
        raise DataError(f"{source}: no column can be compared with the training data; " + " ".join(warnings))
    return Prepared(Encoded(X, y, frame if layout.rules else None), usable, warnings, label_problem)


def _names(columns: list[str], shown: int = 5) -> str:
    text = ", ".join(f"'{c}'" for c in columns[:shown])
    return text + (f" and {len(columns) - shown} more" if len(columns) > shown else "")


def _encode_codes(frame: pd.DataFrame, columns: list[str], source: str):
    """0/1 code columns -> CSR; also returns (bad columns, warning) for values other than 0/1."""
    if not columns:
        return sp.csr_matrix((len(frame), 0), dtype=np.float32), None
    part = frame[columns]
    if not all(pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t) for t in part.dtypes):
        part = part.apply(pd.to_numeric, errors="coerce")
    pieces, bad = [], np.zeros(len(columns), dtype=bool)
    first_bad: dict[int, int] = {}
    for start in range(0, len(frame), ROW_CHUNK):
        dense = part.iloc[start:start + ROW_CHUNK].to_numpy(dtype=np.float32, na_value=np.nan)
        wrong = (dense != 0) & (dense != 1)
        if wrong.any():
            for j in np.flatnonzero(wrong.any(axis=0) & ~bad):
                first_bad[j] = start + int(np.argmax(wrong[:, j]))
            bad |= wrong.any(axis=0)
            dense = np.where(wrong, np.float32(0), dense)
        pieces.append(sp.csr_matrix(dense))
    matrix = sp.vstack(pieces, format="csr") if len(pieces) > 1 else pieces[0]
    if not bad.any():
        return matrix, None
    bad_names = [columns[j] for j in np.flatnonzero(bad)]
    j0 = int(np.flatnonzero(bad)[0])
    row = first_bad[j0]
    value = _show(frame[columns[j0]].iloc[row])
    more = f" (and {len(bad_names) - 1} more such column(s): {_names(bad_names[1:], 3)})" if len(bad_names) > 1 else ""
    message = (f"{source}: binary column '{columns[j0]}' row {row} holds {value!r}, but the training data has only 0/1 "
               f"there{more}; these columns are left out of this dataset's metrics (round or threshold the output)")
    return matrix, (bad_names, message)


def _scatter_columns(block: sp.csr_matrix, have: list[str], everything: list[str]) -> sp.csr_matrix:
    """Place the present code columns at their layout positions (absent ones stay all-zero)."""
    if len(have) == len(everything):
        return block
    position = {c: i for i, c in enumerate(everything)}
    coo = block.tocoo()
    where = np.array([position[c] for c in have], dtype=np.int64)
    return sp.csr_matrix((coo.data, (coo.row, where[coo.col])), shape=(block.shape[0], len(everything)))


def _encode_other(values: pd.Series, coding: ColumnCoding, source: str):
    """A continuous or categorical column -> its encoded CSR block, or a warning when it cannot be encoded."""
    n = len(values)
    if coding.coding == "continuous":
        if coding.kind == "date":       # compared as the day counts the model sees
            try:
                values = pd.Series(coding.numbers(values, source), index=values.index)
            except DataError as exc:
                return None, f"{exc}; it is left out"
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
            row = int(np.argmax(bad)) if bad.any() else 0
            return None, (f"{source}: continuous column '{coding.name}' row {row} holds {_show(values.iloc[row])!r}, "
                          "not a number; it is left out")
        raw = values.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isinf(raw).any():
            row = int(np.argmax(np.isinf(raw)))
            return None, f"{source}: column '{coding.name}' row {row} is infinite; it is left out"
        missing = np.isnan(raw)
        if missing.any() and not coding.has_missing:
            row = int(np.argmax(missing))
            return None, (f"{source}: column '{coding.name}' row {row} is missing, but the training "
                          "data has no missing values there; it is left out")
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.where(missing, coding.fill, (raw - coding.low) / (coding.high - coding.low))
            too_large = ~np.isfinite(scaled.astype(np.float32))
        if too_large.any():      # far outside the training range: no comparison can use it
            row = int(np.argmax(too_large))
            return None, (f"{source}: column '{coding.name}' row {row} holds {_show(values.iloc[row])!r}, too far "
                          "outside the training range to compare; it is left out")
        dense = scaled[:, None] if not coding.has_missing else np.column_stack([scaled, missing])
        return sp.csr_matrix(dense.astype(np.float32)), None
    keys = np.array(values.to_numpy(dtype=object), dtype=object, copy=True)
    keys[pd.isna(keys)] = MISSING_CATEGORY
    codes = pd.Index(coding.categories, dtype=object).get_indexer(keys)
    if (codes < 0).any():
        row = int(np.argmax(codes < 0))
        return None, (f"{source}: column '{coding.name}' row {row} has value {_show(values.iloc[row])!r}, never seen "
                      f"in the training data (known: {', '.join(map(str, coding.categories[:6]))}); it is left out")
    return sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), codes)), shape=(n, coding.width)), None


def _encode_label(frame: pd.DataFrame, layout: Layout, source: str) -> tuple[np.ndarray | None, str | None]:
    if layout.label is None:
        return None, None
    if layout.label not in frame.columns:
        return None, f"{source} has no label column '{layout.label}'"
    values = frame[layout.label]
    if values.isna().any():
        return None, f"{source}: label '{layout.label}' is missing in row {int(values.isna().to_numpy().argmax())}"
    keys = values.to_numpy(dtype=object)
    index = pd.Index(list(layout.label_classes), dtype=object).get_indexer(keys)
    if (index < 0).any():
        # numbers read back as floats (1.0) still match integer classes
        as_number = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        numeric_classes = pd.to_numeric(pd.Series(layout.label_classes), errors="coerce").to_numpy(dtype=np.float64)
        retry = pd.Index(numeric_classes).get_indexer(as_number) if not np.isnan(numeric_classes).any() else index
        index = np.where(index < 0, retry, index)
    if (index < 0).any():
        row = int(np.argmax(index < 0))
        return None, (f"{source}: label '{layout.label}' row {row} has value {_show(values.iloc[row])!r}, not a "
                      f"training class ({', '.join(repr(_show(c)) for c in layout.label_classes[:6])})")
    return index.astype(np.int64), None
