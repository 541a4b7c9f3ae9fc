"""Fidelity, utility and privacy of synthetic EHR tables, with reference rows, figures and a report.

    report = evaluate(train, test, {"ehrdiff": synthetic})
    report.metrics["ehrdiff"]["mia_auroc"]; report.to_json("metrics.json"); report.to_html("report/")

Every metric is defined in docs/metrics.md.
"""

from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.report import Report
from ehrdiff.evaluation.runner import evaluate

__all__ = ["EvaluationConfig", "Report", "evaluate"]
