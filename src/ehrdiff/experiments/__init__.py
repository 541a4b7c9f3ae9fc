"""The paper's experiments on real data: every generator under one stated budget, one evaluation, the tables
(mean and standard deviation over seeds) and figures; the data-scale experiment (Figure 3).

    from ehrdiff.experiments import ExperimentConfig, parse_budget, run_experiment
    results = run_experiment(ExperimentConfig("uci-diabetes", Path("out/uci"), budget=parse_budget("steps:5000"),
                                              data_root=Path("data")))

CLI: ``ehrdiff experiment paper --dataset D --models ... --seeds N --budget steps:N -o DIR``; docs/experiments.md.
"""

from ehrdiff.experiments.runner import run_experiment
from ehrdiff.experiments.spec import (DATASETS, Budget, DatasetSpec, ExperimentConfig, dataset_spec,
                                      default_data_root, default_models, parse_budget)

__all__ = ["DATASETS", "Budget", "DatasetSpec", "ExperimentConfig", "dataset_spec", "default_data_root",
           "default_models", "parse_budget", "run_experiment"]
