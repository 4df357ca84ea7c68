"""The paper's tables for one data set, ours beside the paper's, from a grid folder (``simvae reproduce``).

A grid folder holds ``grid.json`` (its runs: method, seed, run folder, evaluation name) and the
runs under ``runs/``. Each run's figures are read from ``RUN/eval/NAME/metrics.json`` (the
evaluation the grid asked for). Tables, each as ``OUT/NAME.md`` and ``OUT/NAME.csv``:

- ``table1``: MLP probe and k-NN accuracy (paper Table 1)
- ``table5``: linear probe and GMM accuracy (Table 5)
- ``table6``: ARI and NMI of the GMM (Table 6)
- ``table7``: reconstruction MSE and FID (Table 7; plus our classifier FID, no paper figure)
- ``style``: MLP probe accuracy on each style target (``style/*``; CelebA: hair colour), with chance
- ``attributes`` (CelebA): MLP probe accuracy on each of the 20 attributes (Fig. 6)

Rows are methods in the paper's order; each metric has our mean ± standard error over seeds (a
single seed: no standard error) and the paper's. CSV: one row per method, columns ``n_runs``,
``KEY_mean``, ``KEY_se`` (empty for one seed) and ``paper_KEY_mean``, ``paper_KEY_se``, in
metrics.json's units (fractions for accuracies, NMI and ARI; the paper's percentages divided by
100). Markdown shows percentages. Both state each side's budget. No wall time goes into them, so a
grid that was interrupted and resumed writes the same tables as one that was not.
"""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..evaluate.registry import format_value
from ..rundir import atomic_write
from .compare import mean_se
from .model import Note, Table, blocks_markdown
from .paper import METHOD_LABELS, PAPER_BUDGET, STYLE_IN_PAPER, paper_methods, paper_table, paper_text, paper_value

GRID_FILE = "grid.json"
ORDER = list(METHOD_LABELS)
DATASET_LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "celeba": "CelebA"}


@dataclass
class TableSpec:
    name: str
    title: str
    metrics: list[tuple[str, str]]  # (metrics.json key, column label)
    lower_is_better: bool = False


TABLES = [
    TableSpec("table1", "Table 1: content retrieval, MLP probe and k-NN accuracy (%)", [("mlp_acc", "MLP probe"), ("knn_acc", "k-NN")]),
    TableSpec("table5", "Table 5: content, linear probe and GMM accuracy (%)", [("linear_acc", "linear probe"), ("gmm_acc", "GMM")]),
    TableSpec("table6", "Table 6: GMM clustering, ARI and NMI (%)", [("gmm_ari", "ARI"), ("gmm_nmi", "NMI")]),
    TableSpec(
        "table7",
        "Table 7: generation, reconstruction MSE and FID (lower is better)",
        [("recon_mse", "MSE"), ("fid", "FID"), ("classifier_fid", "classifier FID")],
        True,
    ),
]


def read_grid(out: str | Path) -> dict:
    """The grid of folder ``out`` (grid.json) with each run's ``metrics`` (its evaluation's
    metrics.json, None while not evaluated) and ``summary`` (train_summary.json, or None).
    Raises RunDirError when ``out`` holds no grid."""
    from ..errors import RunDirError

    out = Path(out)
    try:
        grid = json.loads((out / GRID_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise RunDirError(f"{out} holds no readable {GRID_FILE}; run 'simvae reproduce' or 'simvae sweep' with --out {out}") from None
    for r in grid["runs"]:
        folder = Path(r["folder"])
        r["metrics"] = _read(folder / "eval" / r["eval_name"] / "metrics.json")
        if r["metrics"] is not None and not r["metrics"].get("finished", True):
            r["metrics"] = None  # an unfinished model is not the grid's result
        r["summary"] = _read(folder / "train_summary.json")
    return grid


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def method_groups(grid: dict, value=None) -> "OrderedDict[str, list[dict]]":
    """method -> the metrics of its evaluated runs (in seed order), methods in the paper's order;
    ``value``: only the runs of that swept value."""
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    runs = sorted(grid["runs"], key=lambda r: (ORDER.index(r["method"]) if r["method"] in ORDER else len(ORDER), r["method"], r["seed"]))
    for r in runs:
        if value is not None and r.get("value") != value:
            continue
        groups.setdefault(r["method"], [])
        if r["metrics"] is not None:
            groups[r["method"]].append(r["metrics"])
    return groups


def stat(runs: list[dict], key: str) -> tuple[float | None, float | None, int]:
    """(mean, standard error or None for fewer than two runs, n) of ``key`` over ``runs``."""
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and r.get(key) == r.get(key)]
    if not vals:
        return None, None, 0
    m, se = mean_se(vals)
    return m, (se if len(vals) > 1 else None), len(vals)


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def budget_lines(grid: dict) -> list[str]:
    """Each side's budget: ours per method (epochs, optimiser steps, training images, images x views
    per step, seeds) and the evaluation settings; the paper's."""
    per_method = OrderedDict()
    for r in grid["runs"]:
        s = r.get("summary") or {}
        cfg = r.get("config") or {}
        key = r["method"]
        if key in per_method:
            continue
        images = s.get("train_images") or (cfg.get("train") or {}).get("train_subset")
        per_method[key] = (
            f"{label(key)} {r['epochs']} epoch(s), {s.get('steps', r.get('steps'))} steps, "
            f"{images if images is not None else 'all'} images, "
            f"{s.get('images_per_step', '?')} x {s.get('n_views', '?')} views per step"
        )
    seeds = grid.get("seeds", [])
    ev = next((r["metrics"].get("eval_config") for r in grid["runs"] if r.get("metrics")), None) or {}
    fid_runs = [r["metrics"] for r in grid["runs"] if r.get("metrics") and "fid" in r["metrics"]]
    fid_text = (
        f"Inception FID on {fid_runs[0].get('fid_samples', ev.get('fid_samples', '?'))} samples"
        if fid_runs
        else "no Inception FID (off on a CPU unless --fid-samples N)"
    )
    eval_text = ("quick preset" if ev.get("quick") else "full protocol") + (
        f": {ev.get('max_train_images') or 'all'} training images (validation {ev.get('val_size')}), probes at most "
        f"{ev.get('probe_max_epochs')} epochs (patience {ev.get('probe_patience')}, stopped on validation), k of k-NN "
        f"1..{ev.get('knn_max_k')} chosen on validation, GMM {ev.get('gmm_restarts')} initialisation(s), "
        f"{fid_text}, "
        f"{ev.get('gen_samples')} generated samples"
        if ev
        else ""
    )
    return [
        f"ours: {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
        + "; ".join(per_method.values())
        + (f"; evaluation: {eval_text}" if eval_text else ""),
        PAPER_BUDGET,
    ]


def _cell(key: str, mean, se) -> str:
    return format_value(key, mean, se) if mean is not None else "–"


def metric_table(spec_metrics: list[tuple[str, str]], groups, dataset: str, methods: list[str]):
    """(markdown Table, csv rows) of metrics ``spec_metrics`` for ``methods``: ours and the paper's."""
    columns = ["method", "runs"]
    for key, name in spec_metrics:
        columns += [f"{name} (ours)", f"{name} (paper{', ' + paper_table(key) if paper_table(key) else ''})"]
    rows, csv_rows = [], []
    for method in methods:
        runs = groups.get(method, [])
        row = [label(method), str(len(runs))]
        c = {"method": method, "n_runs": len(runs)}
        for key, _ in spec_metrics:
            mean, se, _ = stat(runs, key)
            paper = paper_value(key, method, dataset)
            row += [_cell(key, mean, se), paper_text(key, method, dataset) or "–"]
            c.update(
                {
                    f"{key}_mean": mean,
                    f"{key}_se": se,
                    f"paper_{key}_mean": paper[0] if paper else None,
                    f"paper_{key}_se": paper[1] if paper else None,
                }
            )
        rows.append(row)
        csv_rows.append(c)
    return Table(columns, rows), csv_rows


def _csv_text(rows: list[dict]) -> str:
    fields = list(OrderedDict((k, None) for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float) else r[k])) for k in fields})
    return buf.getvalue()


def _methods_for(groups, keys: list[str]) -> list[str]:
    """Our methods, then any the paper reports for ``keys`` that we did not run, in the paper's order."""
    ms = set(groups) | {m for k in keys for m in paper_methods(k)}
    return sorted(ms, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def style_targets(groups) -> tuple[list[str], list[str]]:
    """(style targets: ``hair_colour`` then ``style/*``; CelebA attributes ``attr/*``) the runs were scored on."""
    keys = {k.rsplit("/", 1)[0] for runs in groups.values() for r in runs for k in r if k.endswith("/mlp_acc")}
    style = sorted(k for k in keys if not k.startswith("attr/"))
    style.sort(key=lambda t: (t != "hair_colour", t))
    return style, sorted(k for k in keys if k.startswith("attr/"))


def build_tables(grid: dict) -> list[tuple[str, str, Table, list[dict], list[str]]]:
    """Every table of a reproduce grid: (name, title, Table, csv rows, notes)."""
    dataset = grid["dataset"]
    ds = DATASET_LABELS.get(dataset, dataset)
    groups = method_groups(grid)
    budget = budget_lines(grid)
    missing = [
        f"{label(m)}: {len(grid['seeds']) - len(runs)} of {len(grid['seeds'])} seed(s) not evaluated"
        for m, runs in groups.items()
        if len(runs) < len(grid["seeds"])
    ]
    out = []
    for spec in TABLES:
        keys = [k for k, _ in spec.metrics]
        table, rows = metric_table(spec.metrics, groups, dataset, _methods_for(groups, keys))
        table.caption = (
            f"{spec.title} on {ds}: ours (mean ± standard error over seeds; no ± for a single seed) "
            f"beside the paper's; – where a side has no figure."
        )
        notes = list(budget) + missing
        if spec.name == "table7":
            notes.append(
                "Discriminative methods are decoded by a decoder fitted afterwards on their frozen representation "
                "(the paper's Table 7 lists the generative methods only). FID: Inception features of "
                "class-conditional samples; classifier FID: a small CNN's features (not comparable with the "
                "paper's FID). Figures depend on the number of samples."
            )
        out.append((spec.name, spec.title, table, rows, notes))
    style, attrs = style_targets(groups)
    if style:
        keys = [(f"{t}/mlp_acc", t) for t in style]
        table, rows = metric_table([(k, n) for k, n in keys], groups, dataset, list(groups))
        table.columns = [c for c in table.columns if "(paper" not in c]
        table.rows = [[c for i, c in enumerate(r) if i < 2 or (i - 2) % 2 == 0] for r in table.rows]
        rows = [{k: v for k, v in r.items() if not k.startswith("paper_")} for r in rows]
        chance = {}
        for runs in groups.values():
            for r in runs:
                for t in style:
                    if f"{t}/chance" in r:
                        chance.setdefault(t, r[f"{t}/chance"])
        table.rows.append(["chance", ""] + [_cell(f"{t}/mlp_acc", chance.get(t), None) for t in style])
        rows.append({"method": "chance", "n_runs": "", **{f"{t}/mlp_acc_mean": chance.get(t) for t in style}})
        table.caption = (
            f"Style retrieval on {ds}: MLP probe accuracy (%) on what the augmentation did to one view "
            "(style/*) and, on CelebA, hair colour (the paper's Fig. 5); higher keeps more style. "
            "Last row: chance (the most frequent test class)."
        )
        out.append(("style", "Style retrieval (MLP probe, %)", table, rows, list(budget) + [f"Paper: {STYLE_IN_PAPER}."]))
    if attrs:
        keys = [(f"{t}/mlp_acc", t.split("/", 1)[1]) for t in attrs]
        table, rows = metric_table(keys, groups, dataset, list(groups))
        table.columns = [c for c in table.columns if "(paper" not in c]
        table.rows = [[c for i, c in enumerate(r) if i < 2 or (i - 2) % 2 == 0] for r in table.rows]
        rows = [{k: v for k, v in r.items() if not k.startswith("paper_")} for r in rows]
        table.caption = "CelebA attributes: MLP probe accuracy (%) per attribute (the paper's Fig. 6, plotted only)."
        out.append(("attributes", "CelebA attributes (MLP probe, %)", table, rows, list(budget)))
    return out


def provenance_line(grid: dict) -> str:
    """Where the figures come from: the grid's command, and the simvae commit and host of its runs."""
    summaries = [r["summary"] for r in grid["runs"] if r.get("summary")]
    commits = sorted({str(s.get("simvae_commit") or "unknown") for s in summaries})
    hosts = sorted({str(s.get("host") or "?") for s in summaries})
    command = " ".join(grid.get("command") or []) or "?"
    return f"Made by `{command}`; simvae commit {', '.join(commits) or '?'}; host {'; '.join(hosts) or '?'}."


def table_markdown(title: str, table: Table, notes: list[str], header: str = "") -> str:
    return f"# {title}\n\n" + (f"{header}\n\n" if header else "") + blocks_markdown([table] + [Note(n) for n in notes])


def write_tables(out: str | Path, grid: dict | None = None) -> list[Path]:
    """Write every table of the reproduce grid in ``out`` (NAME.md and NAME.csv); return the paths."""
    out = Path(out)
    grid = grid or read_grid(out)
    paths = []
    header = provenance_line(grid)
    for name, title, table, rows, notes in build_tables(grid):
        paths.append(atomic_write(out / f"{name}.md", table_markdown(title, table, notes, header)))
        paths.append(atomic_write(out / f"{name}.csv", _csv_text(rows)))
    return paths


# ---------------------------------------------------------------------------------------------- sweeps

SWEEP_METRICS = [("knn_val_acc", "validation k-NN"), ("linear_val_acc", "validation linear"), ("mlp_val_acc", "validation MLP")]
SWEEP_TEST = [("knn_acc", "test k-NN"), ("mlp_acc", "test MLP")]


def _value_sort(values: list[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return list(values)


def sweep_rows(grid: dict) -> list[dict]:
    """One row per (method, value): n_runs and mean / se (None for one run) of each sweep metric."""
    rows = []
    for method in grid["methods"]:
        for value in _value_sort(list(OrderedDict.fromkeys(r["value"] for r in grid["runs"]))):
            runs = [r["metrics"] for r in grid["runs"] if r["method"] == method and r["value"] == value and r["metrics"]]
            row = {"method": method, grid["param"]: value, "n_runs": len(runs)}
            for key, _ in SWEEP_METRICS + SWEEP_TEST:
                mean, se, _ = stat(runs, key)
                row[f"{key}_mean"], row[f"{key}_se"] = mean, se
            rows.append(row)
    return rows


def sweep_table(grid: dict, rows: list[dict]) -> Table:
    param = grid["param"]
    cols = ["method", param, "runs"] + [n for _, n in SWEEP_METRICS] + [f"{n} (not for choosing)" for _, n in SWEEP_TEST]
    cells = [
        [label(r["method"]), str(r[param]), str(r["n_runs"])]
        + [_cell(k.replace("_val_acc", "_acc"), r[f"{k}_mean"], r[f"{k}_se"]) for k, _ in SWEEP_METRICS + SWEEP_TEST]
        for r in rows
    ]
    return Table(
        cols,
        cells,
        f"{param} swept on {DATASET_LABELS.get(grid['dataset'], grid['dataset'])}: accuracy (%) on the "
        "validation split held out of the training images (k and probe stopping chosen on it too), mean ± "
        "standard error over seeds; choose the value on these. Test figures are shown for reference only.",
    )


def sweep_plots(out: Path, grid: dict, rows: list[dict]) -> list[tuple[str, str]]:
    """One plot per validation metric, ``sweep_KEY.png``: value on x, mean ± standard error bars, one
    line per method. Returns (file name, caption) of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    param = grid["param"]
    values = list(OrderedDict.fromkeys(r[param] for r in rows))
    try:
        xs = {v: float(v) for v in values}
        numeric = True
    except ValueError:
        xs, numeric = {v: i for i, v in enumerate(values)}, False
    log = numeric and all(x > 0 for x in xs.values()) and max(xs.values()) / min(xs.values()) >= 10
    out_figs = []
    for key, name in SWEEP_METRICS:
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
        drawn = False
        for method in grid["methods"]:
            pts = [
                (xs[r[param]], 100 * r[f"{key}_mean"], 100 * (r[f"{key}_se"] or 0))
                for r in rows
                if r["method"] == method and r[f"{key}_mean"] is not None
            ]
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=label(method))
                drawn = True
        if not drawn:
            plt.close(fig)
            continue
        if log:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(list(xs.values()), list(xs))
        ax.set_xlabel(param)
        ax.set_ylabel(f"{name} accuracy (%)")
        ax.set_title(f"{name} against {param}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fname = f"sweep_{key}.png"
        fig.savefig(out / fname)
        plt.close(fig)
        out_figs.append((fname, f"{name} accuracy against {param} (mean ± standard error over seeds)"))
    return out_figs


def sweep_blocks(out: Path, grid: dict) -> list:
    """The sweep's table, its plots (those written by write_sweep) and its budget, as report blocks."""
    from .model import Figure

    rows = sweep_rows(grid)
    blocks = [sweep_table(grid, rows)]
    for key, name in SWEEP_METRICS:
        if (Path(out) / f"sweep_{key}.png").is_file():
            blocks.append(Figure(f"sweep_{key}.png", f"{name} accuracy against {grid['param']} (mean ± standard error)"))
    return blocks + [Note(n) for n in budget_lines(grid)[:1]]


def write_sweep(out: str | Path, grid: dict | None = None) -> list[Path]:
    """sweep.md, sweep.csv and one plot per validation metric in ``out``; return the paths."""
    out = Path(out)
    grid = grid or read_grid(out)
    rows = sweep_rows(grid)
    figs = sweep_plots(out, grid, rows)
    from .model import Figure

    md = f"# Sweep of {grid['param']}\n\n{provenance_line(grid)}\n\n" + blocks_markdown(
        [sweep_table(grid, rows)] + [Figure(f, c) for f, c in figs] + [Note(budget_lines(grid)[0])]
    )
    paths = [atomic_write(out / "sweep.md", md), atomic_write(out / "sweep.csv", _csv_text(rows))]
    return paths + [out / f for f, _ in figs]
