"""``simvae report``: one self-contained HTML file (tables, claims, figures as data URIs) from a grid
folder or a run folder; where ``/usr/bin/chromium`` exists, it is opened headless and its screenshot
and DOM are checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reproduce import content, fake_grid

from simvae.report.html import folder_report, render_html, write_html_report
from simvae.report.model import Code, Figure, Note, Report, Section, Table

CHROMIUM = "/usr/bin/chromium"


def _png(path: Path, colour: str = "tab:blue") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=60)
    ax.plot([0, 1, 2, 3], [1, 3, 2, 4], color=colour, linewidth=4)
    ax.set_title(path.stem)
    fig.savefig(path)
    plt.close(fig)
    return path


def _grid_folder(tmp_path: Path) -> Path:
    style = {"style/flip/mlp_acc": 0.9, "style/flip/chance": 0.5}
    fake_grid(
        tmp_path,
        {
            "simvae": [content(0.80, 0.85, **style), content(0.82, 0.86, **style)],
            "simclr": [content(0.70, 0.75, **style), content(0.71, 0.74, **style)],
        },
    )
    for name in ("simvae-s0", "simclr-s0"):
        _png(tmp_path / "runs" / name / "eval" / "quick" / "reconstructions.png")
        _png(tmp_path / "runs" / name / "loss_curve.png", "tab:red")
    return tmp_path


def test_render_escapes_text_and_embeds_figures(tmp_path):
    _png(tmp_path / "a.png")
    report = Report(
        "<b>title</b>",
        [
            Section(
                "S",
                [
                    Table(["x", "y"], [["<i>1</i>", "2"]], "cap"),
                    Figure("a.png", "a figure"),
                    Figure("gone.png", "missing one"),
                    Note("careful", "warning"),
                    Code('{"k": 1}', "json"),
                ],
            )
        ],
    )
    html = render_html(report, tmp_path)
    assert "&lt;b&gt;title&lt;/b&gt;" in html and "<i>1</i>" not in html  # text is escaped
    assert html.count("data:image/png;base64,") == 1
    assert "gone.png is missing" in html
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # nothing outside the file


def test_grid_report_holds_tables_claims_figures_and_provenance(tmp_path):
    folder = _grid_folder(tmp_path)
    report = folder_report(folder)
    titles = [s.title for s in report.sections]
    assert titles[0] == "Claims" and any(t.startswith("Table 1") for t in titles) and "Provenance" in titles
    path = write_html_report(folder)
    html = path.read_text()
    assert path == folder / "report.html"
    assert html.count("data:image/png;base64,") == 4  # two runs x (reconstructions, loss curve)
    assert "82.1 ± 0.0" in html  # the paper's SimVAE MLP figure on Fashion-MNIST beside ours
    assert "abc1234" in html and "test host" in html  # provenance from train_summary.json


def test_run_folder_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"method": "simvae", "dataset": "mnist"}}))
    (run / "metrics.json").write_text(json.dumps({"knn_acc": 0.9, "mlp_acc": 0.8, "finished": True}))
    _png(run / "samples.png")
    html = write_html_report(run).read_text()
    assert "90.0" in html and html.count("data:image/png;base64,") == 1


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (/usr/bin/chromium)")
def test_report_opens_in_a_headless_browser(tmp_path):
    np = pytest.importorskip("numpy")
    from PIL import Image

    folder = _grid_folder(tmp_path / "grid")
    path = write_html_report(folder)
    profile, shot = tmp_path / "profile", tmp_path / "shot.png"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]
    subprocess.run(
        flags + [f"--screenshot={shot}", "--window-size=1200,2000", path.as_uri()], capture_output=True, timeout=120, check=False
    )
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page
    dom = subprocess.run(flags + ["--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table") >= 5 and dom.count('<img src="data:image/png;base64,') == 4
    assert "H1" in dom and "Provenance" in dom
    shutil.copy(shot, tmp_path / "kept.png")
