"""Assemble docs/results.md from the Markdown each benchmark writes into benchmarks/results/.

Every section is written by the script named in it, so every number in docs/results.md comes from a command
anyone can rerun; this script only concatenates them in a fixed order.

    python benchmarks/collect_results.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["core", "prepare", "evaluate", "uci_comparison", "official_code", "ablation", "gpu_sweep", "default_budget",
         "default_training", "nnaa_draws", "sampling", "default_vs_paper", "cinc_consistency", "cinc_rules",
         "cinc_continuous", "cinc_icu", "peers_cinc", "baselines", "baselines_uci", "experiments", "private",
         "private_uci", "private_release_uci", "private_pairs_uci", "private_release_cinc", "discriminator_draws_cinc",
         "discriminator_draws_cinc_floor",
         "private_budget_split"]

HEADER = """# Measured results

Each section below was written by the benchmark or experiment script it names (rerun it to reproduce the numbers)
and collected here by `python benchmarks/collect_results.py`. Unless a section says otherwise, the machine is the
project's 2-core x86_64 CPU machine (no GPU). Several sections were measured while other jobs shared the two cores;
each says so where it matters, and speed targets are read as ratios measured within the same run.
"""


def main() -> None:
    results = ROOT / "benchmarks" / "results"
    files = sorted(results.glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))
    parts = [HEADER]
    for path in files:
        text = path.read_text().strip()
        # demote the section's own title one level so the page has one top-level title
        lines = ["#" + line if line.startswith("#") else line for line in text.splitlines()]
        parts.append("\n".join(lines))
    out = ROOT / "docs" / "results.md"
    out.write_text("\n\n".join(parts) + "\n")
    print(f"wrote {out.relative_to(ROOT)} from {len(files)} files")


if __name__ == "__main__":
    main()
