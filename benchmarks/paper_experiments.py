"""The paper's comparison on the open datasets: every model of `ehrdiff experiment paper` folders in one table per
dataset, with the models that beat ehrdiff on each metric named (computed here), the data-scale table and the
figures. Writes benchmarks/results/experiments.md and copies the figures to docs/figures/FOLDER/.

    ALL=ehrdiff,ehrdiff-paper,medgan,emrwgan,corgan,marginals,resample
    .venv/bin/ehrdiff experiment paper --dataset mimic-iv-demo --models $ALL --seeds 3 --budget steps:2000 \\
        --threads 1 -o runs/default-mimic-iv
    .venv/bin/ehrdiff experiment paper --dataset mimic-iii-demo --models $ALL --seeds 3 --budget steps:2000 \\
        --threads 1 -o runs/default-mimic-iii
    .venv/bin/ehrdiff experiment paper --dataset cinc2012 --models ehrdiff,ehrdiff-paper,marginals,resample \\
        --seeds 3 --budget steps:3000 --batch-size 256 --threads 1 -o runs/default-cinc
    .venv/bin/ehrdiff experiment paper --dataset cinc2012 --models medgan,emrwgan,corgan,marginals --seeds 3 \\
        --budget steps:3000 --batch-size 256 --threads 1 -o runs/gan-cinc
    .venv/bin/ehrdiff experiment paper --dataset cinc2012 --models ehrdiff,marginals --seeds 2 --budget steps:3000 \\
        --batch-size 256 --fractions 0.1,0.25,0.5,1 --threads 1 -o runs/scale-cinc
    .venv/bin/python benchmarks/paper_experiments.py runs/default-mimic-iv runs/default-mimic-iii \\
        runs/default-cinc+runs/gan-cinc runs/scale-cinc --figures default-mimic-iv

(each folder's own results.md holds its full command; add `--resume` to continue one.)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from default_vs_paper import METRICS, cell, gap, mean, seconds

ROOT = Path(__file__).resolve().parent
DOCS = ROOT.parent / "docs"
ORDER = ("ehrdiff", "ehrdiff-paper", "medgan", "emrwgan", "corgan", "marginals", "resample")
RIVALS = ("ehrdiff-paper", "medgan", "emrwgan", "corgan")      # the learned models ehrdiff is compared with
FIGURES = ("prevalence.png", "dimwise.png", "codes_per_patient.png")

READING = """How to read it. *beaten by* names the learned models (the paper's EHRDiff and the three GANs) that are
closer to the ideal than ehrdiff's default model on that metric, by the rules of default_vs_paper.md (higher
Spearman and TSTR; AUROCs nearer 0.5; lower gaps, distances and privacy loss; codes and empty rows nearer the real
training data; copies nearer the real test half's), at the tables' three decimals.

Where ehrdiff loses, and why we think so. On both MIMIC demos (80 training patients) ehrdiff's default model is the
closest of the learned models on prevalences, codes per patient and empty rows, and it loses on privacy to the
paper's model and to every GAN: membership inference, nearest-neighbour privacy loss and rows identical to a
training row. The budget is the cause: 2,000 full-batch steps are 2,000 epochs over 80 patients, and the default
model learns fastest per step, so it memorises them; medGAN and CorGAN keep membership inference near 0.5 because
they fit these patients poorly (see their prevalence and discriminator rows), not because they protect them. On data
this small, train for far fewer steps or with differential privacy (docs/conditional-and-dp.md). The discriminators
on 80 + 80 rows fall below 0.5 for several models, so their verdicts there mean little, and the dimension-wise gap
of the paper's model and of ehrdiff are within one standard deviation. On CinC 2012 the trees discriminator
separates every synthetic set, the independent columns too: synthetic rows break the rules that tie a variable's
summaries together (cinc_consistency.md). There EMR-WGAN beats the default model on TSTR and the categorical
distance, while a logistic discriminator tells its rows (and medGAN's and CorGAN's) apart from real ones perfectly
and the default model's less so; over three seeds each the two TSTR means differ by less than either's standard
deviation, so we read them as level, with EMR-WGAN's categorical columns the closer. medGAN and CorGAN are well
behind both on TSTR and the continuous distance; their better membership inference and nearest-neighbour loss come
with rows that fit the data worse. ehrdiff and EMR-WGAN share the same weak point: their continuous marginals (KS)
are far from the real ones, far above the independent columns' (each column's own distribution). For the default
model that distance does not fall with more data in the data-scale table, while its TSTR and correlation distance
improve with the share of training patients and stay below the real data of the same size. Much of that distance
comes from the min-max scaling all these models share: it squeezes each skewed lab column into a sliver near 0 under
its outliers. Scaled through its training quantiles (`continuous_scaling="quantile"`), the default model's continuous
KS halves, at a cost in TSTR (benchmarks/results/cinc_continuous.md, three seeds)."""


def losses(key: str, rule: str, results: dict, present: list[str]) -> list[str]:
    """The rivals closer to the ideal than ehrdiff on ``key``."""
    ours = gap("ehrdiff", key, rule, results)
    if ours is None:
        return []
    gaps = {rival: gap(rival, key, rule, results) for rival in RIVALS if rival in present}
    return [rival for rival, d in gaps.items() if d is not None and d < ours]


def copy_figures(folder: Path, names: list[str]) -> list[str]:
    """Copy the folder's figures next to docs/results.md; their links, relative to docs/."""
    links = []
    for source in names:
        path = folder / source
        if path.exists():
            target = DOCS / "figures" / folder.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            links.append(f"[{path.name}](figures/{folder.name}/{path.name})")
    return links


def scale_section(folder: Path) -> list[str]:
    """The data-scale part of the runner's own results.md, one heading level down."""
    text = (folder / "results.md").read_text()
    match = re.search(r"^## Data scale.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if not match:
        return []
    return ["#" + line if line.startswith("#") else line for line in match.group(0).strip().splitlines()] + [""]


def load_results(spec: str) -> tuple[Path, dict, list[str]]:
    """``DIR`` or ``DIR+DIR2+...``: folders of one dataset (same prepared split) whose models are shown together, each
    model taken from the first folder that has it. Returns the first folder, the merged results and the commands."""
    folders = [Path(p) for p in spec.split("+")]
    results = json.loads((folders[0] / "results.json").read_text())
    exp = results["experiment"]
    commands = [exp["command"]]
    for extra in folders[1:]:
        more = json.loads((extra / "results.json").read_text())
        if (more["experiment"]["dataset"], more["experiment"]["test_rows"]) != (exp["dataset"], exp["test_rows"]):
            raise SystemExit(f"{extra}: another dataset or split than {folders[0]}")
        new = [m for m in more["models"] if m not in results["models"]]
        results["models"].update({m: more["models"][m] for m in new})
        results["runs"] += [r for r in more["runs"] if r["model"] in new]
        exp["run_seconds"] = {**exp.get("run_seconds", {}),
                              **{m: v for m, v in more["experiment"].get("run_seconds", {}).items() if m in new}}
        commands.append(more["experiment"]["command"])
    return folders[0], results, commands


def dataset_section(spec: str, tally: dict[str, list[int]], report_figures: bool) -> list[str]:
    folder, results, commands = load_results(spec)
    exp = results["experiment"]
    present = [m for m in ORDER if m in results["models"]]
    per_model = exp.get("run_seconds", {})
    times = ", ".join(f"{m} {per_model[m]['train_seconds']:,.0f} s" for m in present if m in per_model)
    lines = [f"## {exp['dataset']} (`{spec}`)", "",
             f"{exp['description']}; {exp['training_rows']:,} training and {exp['test_rows']:,} test rows; "
             f"label: {exp.get('label') or '-'}. Budget: {exp['budget']['text']}. Seeds: as many as the command "
             "names (a cell without ± is one seed).", "",
             "Command" + "s" * (len(commands) > 1) + ": " + "; ".join(f"`{c}`" for c in commands) +
             f" (continued with `--resume` where models were added; finished runs are reused; folders joined by + "
             f"were evaluated separately against the same split and evaluation seed). Training seconds, all seeds: "
             f"{times}; training and sampling, all runs: "
             f"{seconds(results):,.0f} s on {exp['machine'].get('cpu_count', '?')} CPU cores, "
             f"{exp['machine'].get('torch_threads')} torch thread(s) per run, other jobs sharing the cores.", ""]
    if len(present) > 1 and "scale" not in results:     # a data-scale folder shows its scale table alone
        lines += ["| metric | " + " | ".join(present) + " | real test half | ehrdiff beaten by |",
                  "|" + "---|" * (len(present) + 3)]
        for key, title, rule in METRICS:
            values = [results["models"][m].get(key) for m in present]
            if all(mean(v) is None for v in values):
                continue
            real_test = results.get("references", {}).get("reference:real-test", {}).get(key)
            beaten = losses(key, rule, results, present)
            for rival in RIVALS:
                if rival in present and mean(results["models"][rival].get(key)) is not None:
                    tally.setdefault(rival, [0, 0])
                    tally[rival][0 if rival in beaten else 1] += 1
            lines.append(f"| {title} | " + " | ".join(cell(v) for v in values) + f" | {cell(real_test)} | "
                         + (", ".join(beaten) or "-") + " |")
        lines.append("")
    lines += scale_section(folder)
    links = copy_figures(folder, [f"report/figures/{f}" for f in FIGURES if report_figures]
                         + ["figures/data_scale.png"])
    if links:
        lines += ["Figures: " + ", ".join(links) + f" (every figure of every run: `{folder}/report/figures/`).", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="+", help="experiment folders (results.json inside); DIR+DIR2 shows "
                        "the models of folders of the same dataset in one table")
    parser.add_argument("--figures", nargs="*", default=[], metavar="FOLDER",
                        help="folders whose report figures (prevalence, dimwise, codes per patient) are copied "
                             "to docs/ (the data-scale figure always is)")
    args = parser.parse_args()
    lines = ["# The paper's comparison on the open datasets: ehrdiff, the paper's EHRDiff and the GAN baselines", "",
             f"Tables: `.venv/bin/python benchmarks/paper_experiments.py {' '.join(sys.argv[1:])}` "
             "(the experiment commands are in each section; UCI diabetes is in uci_comparison.md). Cells: mean ± "
             "standard deviation over seeds. Machine: the project's 2-core CPU.", "", READING, ""]
    tally: dict[str, list[int]] = {}
    for folder in args.experiments:
        lines += dataset_section(folder, tally, folder in args.figures or Path(folder).name in args.figures)
    if tally:
        lines.append("Over every dataset and metric above, ehrdiff against each learned model (metrics where that "
                     "model is closer to the ideal / where it is not): "
                     + "; ".join(f"{m} {lost} / {kept}" for m, (lost, kept) in tally.items()) + ".")
    (ROOT / "results" / "experiments.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
