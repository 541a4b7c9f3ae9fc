"""``ehrdiff prepare SOURCE ... -o DIR``: raw clinical files -> DIR/train.parquet, DIR/test.parquet and
DIR/summary.json. Argument parsing only; the work is in ehrdiff.data.sources."""

from __future__ import annotations

import argparse
import sys

from ehrdiff.errors import DataError

SOURCE_HELP = {
    "mimic": "MIMIC-III/IV diagnoses (and procedures) -> binary patient x ICD-category matrix",
    "cinc2012": "PhysioNet/CinC 2012 records + Outcomes -> one row per ICU stay with 48 h summaries",
    "ptb": "PTB heartbeat CSVs (normal + abnormal) -> one row per beat",
    "uci-diabetes": "UCI diabetes 130-US hospitals zip -> patient-level codes or encounter-level mixed table",
    "codes": "any long (subject, code) CSV/Parquet -> binary or count matrix",
    "table": "any wide CSV/Parquet, kinds inferred (override with --kind)",
    "meds": "a MEDS dataset folder -> subject x code matrix",
}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes print one line in the same form as every other ehrdiff error."""

    def error(self, message: str):
        self.exit(2, f"ehrdiff: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output folder for train.parquet, test.parquet and summary.json")
    parser.add_argument("--test-fraction", type=_fraction, default=0.2, metavar="F",
                        help="share of patients held out for test (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split (default 0)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("prepare", help="turn raw clinical files into train/test tables",
                                   description="Turn raw clinical files into model-ready train/test tables, split "
                                               "by patient (seeded), with a JSON summary.")
    parser.error = _Parser.error.__get__(parser)  # `ehrdiff prepare` without a source: the same one-line error
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True, parser_class=_Parser)

    p = sources.add_parser("mimic", help=SOURCE_HELP["mimic"], description=SOURCE_HELP["mimic"])
    p.add_argument("--diagnoses", required=True, metavar="PATH", help="DIAGNOSES_ICD / diagnoses_icd (.csv[.gz])")
    p.add_argument("--procedures", metavar="PATH", help="PROCEDURES_ICD / procedures_icd (optional)")
    p.add_argument("--level", choices=("patient", "admission"), default="patient",
                   help="one row per patient (default) or per admission")
    p.add_argument("--icd10", choices=("drop", "keep", "error"), default="drop",
                   help="MIMIC-IV ICD-10 rows: drop (default; counted in summary.json), keep as separate 3-character "
                        "ICD-10 columns, or error when a file mixes versions")
    p.add_argument("--min-count", type=_positive_int, default=1, metavar="N",
                   help="keep a code category only when at least N rows hold it (default 1)")
    p.add_argument("--titles", metavar="PATH", help="d_icd_diagnoses file: code titles into summary.json")
    p.add_argument("--procedure-titles", metavar="PATH", help="d_icd_procedures file (with --procedures)")
    _common(p)

    p = sources.add_parser("cinc2012", help=SOURCE_HELP["cinc2012"], description=SOURCE_HELP["cinc2012"])
    p.add_argument("--records", required=True, metavar="PATH", help="set folder (set-a/) or its .tar.gz")
    p.add_argument("--outcomes", required=True, metavar="PATH", help="Outcomes file of the same set")
    _common(p)

    p = sources.add_parser("ptb", help=SOURCE_HELP["ptb"], description=SOURCE_HELP["ptb"])
    p.add_argument("--normal", required=True, metavar="PATH", help="ptbdb_normal.csv")
    p.add_argument("--abnormal", required=True, metavar="PATH", help="ptbdb_abnormal.csv")
    _common(p)

    p = sources.add_parser("uci-diabetes", help=SOURCE_HELP["uci-diabetes"], description=SOURCE_HELP["uci-diabetes"])
    p.add_argument("--zip", required=True, metavar="PATH", help="dataset_diabetes.zip (or diabetic_data.csv)")
    p.add_argument("--level", choices=("patient", "encounter"), default="patient",
                   help="patient: ICD-9 category matrix + label (default); encounter: mixed table")
    p.add_argument("--min-count", type=_positive_int, default=1, metavar="N",
                   help="keep a code category only when at least N rows hold it (default 1)")
    _common(p)

    p = sources.add_parser("codes", help=SOURCE_HELP["codes"], description=SOURCE_HELP["codes"])
    p.add_argument("--input", required=True, metavar="PATH", help="long table (.csv, .csv.gz, .tsv, .parquet)")
    p.add_argument("--subject-col", required=True, metavar="C", help="subject id column")
    p.add_argument("--code-col", required=True, metavar="C", help="code column (read as text)")
    p.add_argument("--label-col", metavar="C", help="optional label column (one value per subject)")
    p.add_argument("--counts", action="store_true", help="count matrix instead of 0/1")
    p.add_argument("--min-count", type=_positive_int, default=1, metavar="N",
                   help="keep a code only when at least N subjects hold it (default 1)")
    _common(p)

    p = sources.add_parser("table", help=SOURCE_HELP["table"], description=SOURCE_HELP["table"])
    p.add_argument("--input", required=True, metavar="PATH", help="wide table (.csv, .csv.gz, .tsv, .parquet)")
    p.add_argument("--kind", action="append", default=[], metavar="COL=KIND",
                   help="override a column's kind (binary, continuous, categorical, label, id); repeatable")
    p.add_argument("--label-col", metavar="C", help="the label column (renamed 'label')")
    p.add_argument("--subject-col", metavar="C", help="patient id column the split is made on")
    _common(p)

    p = sources.add_parser("meds", help=SOURCE_HELP["meds"], description=SOURCE_HELP["meds"])
    p.add_argument("--root", required=True, metavar="PATH", help="MEDS root folder (holds data/)")
    p.add_argument("--prefix", action="append", default=[], metavar="P",
                   help="keep only codes starting with P; repeatable")
    p.add_argument("--label-code", metavar="CODE", help="a code that becomes the label (1 if the subject has it)")
    p.add_argument("--counts", action="store_true", help="count matrix instead of 0/1")
    p.add_argument("--min-count", type=_positive_int, default=1, metavar="N",
                   help="keep a code only when at least N subjects hold it (default 1)")
    _common(p)
    return parser


def _kinds(pairs: list[str]) -> dict[str, str]:
    kinds = {}
    for pair in pairs:
        column, sep, kind = pair.rpartition("=")
        if not sep or not column:
            raise DataError(f"--kind {pair!r}: write it as COLUMN=KIND, e.g. --kind icd_code=categorical")
        kinds[column] = kind
    return kinds


def options(args: argparse.Namespace) -> dict:
    """The source function's keyword arguments from the parsed command line."""
    source = args.source
    if source == "mimic":
        return dict(diagnoses=args.diagnoses, procedures=args.procedures, level=args.level, icd10=args.icd10,
                    min_count=args.min_count, titles=args.titles, procedure_titles=args.procedure_titles)
    if source == "cinc2012":
        return dict(records=args.records, outcomes=args.outcomes)
    if source == "ptb":
        return dict(normal=args.normal, abnormal=args.abnormal)
    if source == "uci-diabetes":
        return dict(path=args.zip, level=args.level, min_count=args.min_count)
    if source == "codes":
        return dict(input=args.input, subject_col=args.subject_col, code_col=args.code_col,
                    label_col=args.label_col, counts=args.counts, min_count=args.min_count)
    if source == "table":
        return dict(input=args.input, kinds=_kinds(args.kind), label_col=args.label_col, subject_col=args.subject_col)
    return dict(root=args.root, prefixes=tuple(args.prefix), label_code=args.label_code, counts=args.counts,
                min_count=args.min_count)


def run(args: argparse.Namespace) -> int:
    from ehrdiff.data.sources import prepare  # imported here so `ehrdiff --help` stays fast

    summary = prepare(args.source, args.output, test_fraction=args.test_fraction, seed=args.seed, **options(args))
    train, test = summary["shapes"]["train"], summary["shapes"]["test"]
    line = (f"{args.output}: train.parquet {train[0]:,} x {train[1]:,}, test.parquet {test[0]:,} x {test[1]:,} "
            f"({summary['subjects']['train']:,} / {summary['subjects']['test']:,} subjects)")
    if "label" in summary:
        line += f", label 1 in {summary['label']['all'].get('1', 0):,} rows"
    print(line)
    for note in summary.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return 0
