"""The report: stable JSON schema, Markdown, one self-contained HTML page whose figures render in Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import block_binary_data
from ehrdiff.evaluation import catalog, evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


@pytest.fixture(scope="module")
def report():
    frame = block_binary_data(900, 4, 5, 0)
    frame["label"] = (frame.iloc[:, :5].sum(axis=1) > 2).astype(int)
    train, test = frame.iloc[:600].reset_index(drop=True), frame.iloc[600:].reset_index(drop=True)
    runs = {f: train.iloc[:int(600 * f)].sample(n=600, replace=True, random_state=1) for f in (0.25, 0.5, 1.0)}
    return evaluate(train, test, {"boot": train.sample(frac=1.0, replace=True, random_state=0)},
                    scale={"model": runs}, threads=1, discriminator_iterations=20)


def test_json_schema(report, tmp_path):
    path = report.to_json(tmp_path / "metrics.json")
    data = json.loads(path.read_text())
    assert list(data) == ["datasets"]
    expected = {"boot", "model@0.25", "model@0.5", "model@1", "reference:real-test", "reference:train-resample",
                "reference:independent"}
    assert set(data["datasets"]) == expected
    for name, metrics in data["datasets"].items():
        assert isinstance(metrics["skipped"], dict) and isinstance(metrics["warnings"], list)
        for key in (*catalog.REQUIRED, "tstr_auroc", "trtr_auroc", "n_rows"):
            assert key in metrics, (name, key)
        for key, value in metrics.items():
            if key in ("skipped", "warnings"):
                continue
            assert key in catalog.by_key(), key
            assert value is None or type(value) in (int, float), (key, value)
            if value is None:
                assert metrics["skipped"][key], key  # every null has its reason
    assert data["datasets"]["model@0.25"]["training_fraction"] == 0.25


def test_markdown_lists_every_dataset_and_required_metric(report):
    text = report.to_markdown()
    for name in report.metrics:
        assert name in text
    for key in catalog.REQUIRED:
        assert f"| {key} |" in text
    assert "skipped:" in text  # the rare/medium prevalence buckets are empty on this data


def test_html_is_one_self_contained_page(report, tmp_path):
    path = report.to_html(tmp_path)
    page = path.read_text()
    sources = re.findall(r"<img[^>]*src='([^']*)'", page)
    names = sorted(report.figures())
    assert names == sorted(["prevalence.png", "prevalence_log.png", "dimwise.png", "codes_per_patient.png",
                            "training_size.png"])
    assert len(sources) == len(names)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(PNG_MAGIC) for s in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    for name in names:
        assert (tmp_path / "figures" / name).read_bytes().startswith(PNG_MAGIC)


CHECK_SCRIPT = ("<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
                "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}"
                "var d=document.createElement('div');d.id='img-check';d.textContent='loaded='+ok+' total='+im.length;"
                "document.body.appendChild(d);});</script>")


def rendered_image_counts(page: Path, profile: Path) -> tuple[int, int]:
    """(images loaded, images) after Chromium has loaded the page headless."""
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    match = re.search(r"loaded=(\d+) total=(\d+)", result.stdout)
    assert match, f"no image check in Chromium's DOM dump: {result.stderr[-500:]}"
    return int(match.group(1)), int(match.group(2))


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Chromium is not installed (Debian: apt-get install chromium; scripts/test.sh does it)")
def test_every_figure_renders_in_headless_chromium(report, tmp_path):
    page = report.to_html(tmp_path / "report")
    checked = tmp_path / "checked.html"
    # the report plus one broken image, which must be counted as not loaded (the check can fail)
    broken = "<img alt='broken' src='data:image/png;base64,AAAA'>"
    checked.write_text(page.read_text().replace("</body>", broken + CHECK_SCRIPT + "</body>"))
    loaded, total = rendered_image_counts(checked, tmp_path / "profile")
    assert total == len(report.figures()) + 1
    assert loaded == len(report.figures())


def test_docs_define_every_metric():
    text = DOCS.read_text()
    missing = [m.key for m in catalog.metrics() if f"`{m.key}`" not in text]
    assert not missing, f"docs/metrics.md does not define: {missing}"
