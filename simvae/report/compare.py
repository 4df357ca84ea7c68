"""`simvae compare`: one table and one reconstruction figure across evaluated runs.

Methods are rows; k-NN, linear, MLP, GMM accuracy, NMI and ARI are columns, as
mean ± standard error (sd / sqrt(n), n = number of seeds) when several runs of a
method are given.
"""

from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
from pathlib import Path

from ..errors import RunDirError

COLUMNS = [("knn_acc", "k-NN"), ("linear_acc", "linear"), ("mlp_acc", "MLP"), ("gmm_acc", "GMM acc"),
           ("gmm_nmi", "GMM NMI"), ("gmm_ari", "GMM ARI")]
N_IMAGES = 12


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def read_runs(run_dirs: list[Path]) -> "OrderedDict[str, list[dict]]":
    """method -> metrics of each of its runs (in the order given)."""
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    datasets = set()
    for d in run_dirs:
        mpath = Path(d) / "metrics.json"
        if not mpath.is_file():
            raise RunDirError(f"{d} has no metrics.json; run 'simvae evaluate {d}' first")
        try:
            m = json.loads(mpath.read_text())
        except json.JSONDecodeError:
            raise RunDirError(f"{mpath} is not valid JSON; run 'simvae evaluate {d}' again") from None
        datasets.add(m.get("dataset"))
        groups.setdefault(m.get("method", "?"), []).append({**m, "_dir": str(d)})
    if len(datasets) > 1:
        raise RunDirError(f"runs on different data sets ({', '.join(sorted(map(str, datasets)))}) cannot share one table")
    return groups


def comparison_rows(groups) -> list[dict]:
    rows = []
    for method, runs in groups.items():
        row = {"method": method, "n_runs": len(runs)}
        for key, _ in COLUMNS:
            vals = [r[key] for r in runs if key in r]
            if vals:
                row[key], row[key + "_se"] = mean_se(vals)
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], dataset: str) -> str:
    head = "| method | runs | " + " | ".join(name for _, name in COLUMNS) + " |"
    lines = [f"Test-set figures on {dataset} (%; mean ± standard error over runs where runs > 1).", "", head,
             "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            if key not in r:
                cells.append("–")
            elif r["n_runs"] > 1:
                cells.append(f"{100 * r[key]:.1f} ± {100 * r[key + '_se']:.1f}")
            else:
                cells.append(f"{100 * r[key]:.1f}")
        lines.append(f"| {r['method']} | {r['n_runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: list[Path], out_dir: Path, figure: bool = True) -> list[Path]:
    """Write comparison.md, comparison.csv and reconstructions.png into ``out_dir``."""
    groups = read_runs(run_dirs)
    rows = comparison_rows(groups)
    dataset = next(iter(groups.values()))[0].get("dataset", "?")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "comparison.md"
    md.write_text(f"# simvae comparison\n\n{markdown_table(rows, dataset)}\nRuns:\n\n"
                  + "".join(f"- {m}: {', '.join(r['_dir'] for r in runs)}\n" for m, runs in groups.items()))
    csv_path = out_dir / "comparison.csv"
    fields = ["method", "n_runs"] + [k for key, _ in COLUMNS for k in (key, key + "_se")]
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    paths = [md, csv_path]
    if figure:
        paths.append(reconstruction_figure(groups, out_dir / "reconstructions.png"))
    return paths


def reconstruction_figure(groups, path: Path) -> Path:
    """The same test images reconstructed by every method (its first run), side by side."""
    from ..run import load_run
    from .figures import reconstruction_grid

    rows = {}
    images = None
    data = None
    for method, runs in groups.items():
        run = load_run(runs[0]["_dir"], data=data)
        data = run.data
        images = data.test_images[:N_IMAGES]
        if not run.method.generative:
            from ..evaluate.decoder_fit import ensure_decoder

            ensure_decoder(run, log=lambda msg: None, max_epochs=run.config.eval.decoder_max_epochs,
                           patience=run.config.eval.decoder_patience)
        rec = run.reconstruct(images)
        if rec is not None:
            rows[method] = rec
    reconstruction_grid(images, rows, path, title="the same test images, reconstructed by each method")
    return path
