"""`simvae compare`: one table and one reconstruction figure across evaluated runs.

Rows are experiments, columns are k-NN, linear, MLP, GMM accuracy, NMI and ARI, as mean ±
standard error (sd / sqrt(n), n = number of runs in the row) where a row holds several runs.
Only like is averaged with like: runs share a row when their whole resolved configuration
(config.json's train and method sections, and the evaluation settings recorded in metrics.json,
else config.json's eval section) is equal except for the seed and the keys in IGNORED_KEYS.
Rows of one method are labelled by what differs, e.g. "simvae (epochs=2, train_subset=None)".
"""

from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
from pathlib import Path

from ..errors import RunDirError
from ..evaluate.registry import METRICS, format_value, headline_keys
from .model import Figure, Note, Report, Section, Table, blocks_markdown, to_markdown

COLUMNS = [(key, METRICS[key].label) for key in headline_keys()]  # from the one metric registry
TARGET_COLUMN = "mlp_acc"  # the figure shown for each other target (style, hair colour): its MLP probe
N_IMAGES = 12
SECTIONS = ("train", "method", "eval")

# Configuration keys ("section.key") that do not change the experiment, so runs differing only in
# them share a row: the seeds (a row averages over them), where and on what a run ran, how often it
# was saved or checked, and the evaluation's t-SNE map size (no table figure depends on it).
IGNORED_KEYS = frozenset({
    "train.seed", "eval.seed",
    "train.device", "eval.device", "train.data_dir", "train.download", "train.compile",
    "train.checkpoint_every", "train.checkpoint_every_steps", "train.checkpoint_minutes",
    "train.divergence_check_every", "train.threads", "eval.map_points",
})
_ABSENT = "(absent)"  # a key one run's config has and another's lacks (written by another version)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def _read_json(path: Path, fix: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON; {fix}") from None


def experiment_config(config: dict, eval_used: dict | None) -> dict[str, str]:
    """The flattened configuration that defines a run's experiment: {"section.key": JSON text of the value},
    without IGNORED_KEYS. ``eval_used`` (metrics.json's eval_config) replaces config.json's eval section."""
    out = {}
    for section in SECTIONS:
        values = eval_used if section == "eval" and eval_used is not None else config.get(section) or {}
        for key, value in values.items():
            if f"{section}.{key}" not in IGNORED_KEYS:
                out[f"{section}.{key}"] = json.dumps(value, sort_keys=True)
    return out


def _fmt_value(text: str) -> str:
    value = json.loads(text) if text != _ABSENT else text
    return value if isinstance(value, str) else repr(value)


def read_runs(run_dirs: list[Path]) -> "OrderedDict[str, list[dict]]":
    """Row label -> metrics of each of its runs (in the order given).

    Each run's dict is its metrics.json plus "_dir", "_config" (experiment_config, or None without a
    config.json: such runs share a row per method) and "_split" (the keys, short names, that tell
    its method's rows apart; empty when the method has one row). Raises RunDirError for a folder
    without metrics.json, a damaged JSON file, a folder given twice, or runs on different data sets.
    """
    runs, seen, datasets = [], set(), set()
    for d in run_dirs:
        d = Path(d)
        if d.resolve() in seen:
            raise RunDirError(f"{d} is given twice; give each run folder once")
        seen.add(d.resolve())
        mpath = d / "metrics.json"
        if not mpath.is_file():
            raise RunDirError(f"{d} has no metrics.json; run 'simvae evaluate {d}' first")
        m = _read_json(mpath, f"run 'simvae evaluate {d}' again")
        cpath = d / "config.json"
        config = _read_json(cpath, "the run folder is damaged") if cpath.is_file() else None
        cfg = experiment_config(config, m.get("eval_config")) if config is not None else None
        if cfg is not None and m.get("finished") is False:  # an unfinished model is its own experiment
            cfg["state.model_step"] = json.dumps(m.get("model_step"))
        datasets.add(m.get("dataset"))
        runs.append({**m, "_dir": str(d), "_config": cfg})
    if len(datasets) > 1:
        raise RunDirError(f"runs on different data sets ({', '.join(sorted(map(str, datasets)))}) cannot share one table")

    experiments: OrderedDict[tuple, list[dict]] = OrderedDict()
    for r in runs:
        key = (r.get("method", "?"), None if r["_config"] is None else tuple(sorted(r["_config"].items())))
        experiments.setdefault(key, []).append(r)
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for (method, key), members in experiments.items():
        configs = [rs[0]["_config"] for (m, k), rs in experiments.items() if m == method and k is not None]
        keys = list(OrderedDict.fromkeys(k for c in configs for k in c))  # in config.json's order
        split = [k for k in keys if len({c.get(k, _ABSENT) for c in configs}) > 1]
        shorts = [k.split(".", 1)[1] for k in split]
        names = [s if shorts.count(s) == 1 else k for k, s in zip(split, shorts)]
        if key is None:
            parts = ["no config.json"] if configs else []
        else:
            parts = [f"{n}={_fmt_value(members[0]['_config'].get(k, _ABSENT))}" for k, n in zip(split, names)]
        label = f"{method} ({', '.join(parts)})" if parts else str(method)
        unfinished = [r for r in members if r.get("finished") is False]
        if unfinished:
            r = unfinished[0]
            label += f" [unfinished: epoch {r.get('model_epoch')} of {r.get('epochs_planned')}]"
        if label in groups:  # distinct values that print alike (1 and "1"): keep the rows apart
            label += f" #{sum(lab.split(' #')[0] == label for lab in groups) + 1}"
        for r in members:
            r["_split"] = names
        groups[label] = members
    return groups


def columns_for(groups) -> list[tuple[str, str]]:
    """The table's columns: the headline metrics (content, generation), then the MLP probe of each
    other target the runs have (``style/flip``, ``hair_colour``; the many ``attr/`` targets are
    left to the per-attribute figure), content first, style after."""
    targets = sorted({k.rsplit("/", 1)[0] for runs in groups.values() for r in runs for k in r
                      if k.endswith("/" + TARGET_COLUMN) and not k.startswith("attr/")},
                     key=lambda t: (t.startswith("style/"), t))
    return COLUMNS + [(f"{t}/{TARGET_COLUMN}", f"{t} MLP") for t in targets]


def chance_note(groups) -> str | None:
    """What chance is on each style target (the most frequent test class), from the first run that says."""
    chances = {}
    for runs in groups.values():
        for r in runs:
            for k, v in r.items():
                if k.endswith("/chance"):
                    chances.setdefault(k.rsplit("/", 1)[0], v)
    if not chances:
        return None
    return ("Style targets: what the augmentation did to one view of each image, predicted from its representation; "
            "chance (the most frequent class): " + ", ".join(f"{t} {100 * v:.1f}" for t, v in sorted(chances.items())) + ".")


def comparison_rows(groups, columns=None) -> list[dict]:
    """One row per group: label, method, number of runs, and mean and standard error of each column."""
    rows = []
    for label, runs in groups.items():
        row = {"method": runs[0].get("method", "?"), "label": label, "n_runs": len(runs)}
        for key, _ in columns or COLUMNS:
            vals = [r[key] for r in runs if key in r]
            if vals:
                row[key], row[key + "_se"] = mean_se(vals)
        rows.append(row)
    return rows


def grouping_notes(groups) -> list[str]:
    """Lines saying which keys split a method's rows, and which runs had no config.json."""
    notes, done = [], set()
    for runs in groups.values():
        method = runs[0].get("method", "?")
        if runs[0].get("_split") and method not in done:
            done.add(method)
            notes.append(f"Rows of {method} differ in {', '.join(runs[0]['_split'])}; runs share a row only when "
                         "their whole configuration matches except the seed (and device, data folder, checkpointing).")
    bare = [r["_dir"] for runs in groups.values() for r in runs if r.get("_config") is None]
    if bare:
        notes.append(f"No config.json in {', '.join(bare)}: grouped by method only, so their rows may mix experiments.")
    return notes


def comparison_table(rows: list[dict], dataset: str, columns=None) -> Table:
    columns = columns or COLUMNS
    cells = [[r.get("label", r["method"]), str(r["n_runs"])]
             + [format_value(key, r.get(key), r.get(key + "_se") if r["n_runs"] > 1 else None) for key, _ in columns]
             for r in rows]
    return Table(["method", "runs"] + [name for _, name in columns], cells,
                 f"Test-set figures on {dataset} (accuracies in %; mean ± standard error over runs where runs > 1; "
                 "recon. MSE per pixel in [0, 1], lower is better; FIDs lower is better).")


def markdown_table(rows: list[dict], dataset: str, notes: list[str] = (), columns=None) -> str:
    return blocks_markdown([comparison_table(rows, dataset, columns)] + [Note(f"Note: {n}") for n in notes])


def compare_runs(run_dirs: list[Path], out_dir: Path, figure: bool = True, overwrite: bool = False) -> list[Path]:
    """Write comparison.md, comparison.csv and (where a run has a checkpoint) reconstructions.png into
    ``out_dir``; return the paths written.

    Raises RunDirError when ``out_dir`` already holds comparison.md (unless ``overwrite``), and as
    read_runs does."""
    out_dir = Path(out_dir)
    md = out_dir / "comparison.md"
    if md.exists() and not overwrite:
        raise RunDirError(f"{out_dir} already holds a comparison ({md.name}); pass --overwrite to replace it "
                          "or choose another --out")
    groups = read_runs(run_dirs)
    columns = columns_for(groups)
    rows = comparison_rows(groups, columns)
    dataset = next(iter(groups.values()))[0].get("dataset", "?")
    notes = grouping_notes(groups)
    chance = chance_note(groups)
    if chance:
        notes.append(chance)
    shown, skipped = figure_runs(groups) if figure else ({}, [])
    if figure:
        notes += [f"Reconstruction figure: {s}." for s in skipped]
        if not shown:
            notes.append("No reconstruction figure: no run has a checkpoint.pt and a config.json.")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    report = Report("simvae comparison", [
        Section("Results", [comparison_table(rows, dataset, columns)] + [Note(f"Note: {n}") for n in notes]),
        Section("Runs", [Note("\n".join(f"- {label}: {', '.join(r['_dir'] for r in runs)}" for label, runs in groups.items()))]),
    ])
    for title, fname, caption in content_style_figures(groups, rows, out_dir):
        report.sections.insert(1, Section(title, [Figure(fname, caption)]))
        paths.append(out_dir / fname)
    if shown:
        report.sections.insert(1, Section("Reconstructions", [Figure("reconstructions.png", "the same test images, "
                                                                    "reconstructed by each row's first run"),
                                                             Figure("augmentations.png", "augmented views and each "
                                                                    "row's reconstructions of them")]))
    md.write_text(to_markdown(report))
    csv_path = out_dir / "comparison.csv"
    fields = ["method", "n_runs"] + [k for key, _ in columns for k in (key, key + "_se")] + ["label"]
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    paths = [md, csv_path] + paths
    if shown:
        paths += reconstruction_figure(shown, out_dir / "reconstructions.png")
    return paths


def _style_targets(groups) -> list[str]:
    """The non-content targets the runs were scored on (their MLP probe), content-like first."""
    return sorted({k.rsplit("/", 1)[0] for runs in groups.values() for r in runs for k in r
                   if k.endswith("/" + TARGET_COLUMN)}, key=lambda t: (t.startswith("style/"), t.startswith("attr/"), t))


def content_style_figures(groups, rows, out_dir: Path) -> list[tuple[str, str, str]]:
    """content_style.png (content MLP accuracy against style: CelebA's hair colour, else the mean
    over the style/ targets; paper Fig. 5 middle) and target_gains.png (per-target accuracies, and
    the gains of SimVAE over each method; Fig. 5 right, Fig. 6) where the runs have other targets.
    Returns (section title, file name, caption) of each figure written."""
    from .figures import content_style_scatter, target_accuracies_and_gains

    targets = _style_targets(groups)
    if not targets:
        return []
    style = [t for t in targets if t == "hair_colour"] or [t for t in targets if t.startswith("style/")] or targets
    what = style[0] if len(style) == 1 else f"mean of {len(style)} style targets"
    listed = ", ".join(style)
    points = []
    for label, runs in groups.items():
        xs = [r["mlp_acc"] for r in runs if "mlp_acc" in r]
        ys = [sum(r[f"{t}/{TARGET_COLUMN}"] for t in style) / len(style) for r in runs
              if all(f"{t}/{TARGET_COLUMN}" in r for t in style)]
        if xs and ys:
            (x, x_se), (y, y_se) = mean_se(xs), mean_se(ys)
            points.append({"label": label, "x": x, "y": y, "x_se": x_se, "y_se": y_se})
    out = []
    if points:
        content_style_scatter(points, out_dir / "content_style.png", "content: MLP probe on the class (%)",
                              f"style: MLP probe, {what} (%)", "content against style (test set)")
        out.append(("Content against style", "content_style.png",
                    f"x: content accuracy; y: {what} ({listed}); error bars: standard error over runs"))
    reference = next((r["label"] for r in rows if r["method"] == "simvae"), None)
    if reference is not None and len(rows) > 1:
        def mean_of(runs, key):
            vals = [r[key] for r in runs if key in r]
            return mean_se(vals)[0] if vals else float("nan")

        accs = {label: [mean_of(runs, f"{t}/{TARGET_COLUMN}") for t in targets] for label, runs in groups.items()}
        first = [r for runs in groups.values() for r in runs]
        chance = [next((r[f"{t}/chance"] for r in first if f"{t}/chance" in r), float("nan")) for t in targets]
        target_accuracies_and_gains(targets, accs, reference, out_dir / "target_gains.png",
                                    "MLP probe accuracy per target, and SimVAE's gain over each method", chance=chance)
        out.append(("Per-target accuracy and SimVAE's gains", "target_gains.png",
                    "top: test accuracy of the MLP probe per target (grey bars: chance, the most frequent test "
                    "class, where recorded); bottom: SimVAE minus each method, in points"))
    return out


def figure_runs(groups) -> tuple[dict[str, str], list[str]]:
    """The run folder shown for each row (its first run with checkpoint.pt and config.json), and a
    line for each row left out of the figure."""
    from ..checkpoint import CHECKPOINT_NAME

    shown, skipped = {}, []
    for label, runs in groups.items():
        usable = [r["_dir"] for r in runs if (Path(r["_dir"]) / CHECKPOINT_NAME).is_file()
                  and (Path(r["_dir"]) / "config.json").is_file()
                  and ("recon_mse" in r or (Path(r["_dir"]) / "decoder.pt").is_file())]
        if usable:
            shown[label] = usable[0]
        else:
            skipped.append(f"{label} left out (no {CHECKPOINT_NAME}, config.json and decoder in "
                           f"{', '.join(r['_dir'] for r in runs)}; 'simvae evaluate' fits a discriminative run's decoder)")
    return shown, skipped


def reconstruction_figure(shown: dict[str, str], path: Path) -> list[Path]:
    """The same test images reconstructed by each row's run (label -> run folder), side by side
    (``path``), and ``augmentations.png`` beside it: a few test images, their augmented views and
    each row's reconstructions of them (what survives a flip, a crop, a colour change)."""
    from ..run import load_run
    from . import augmented_views, reconstruct_views
    from .figures import augmentation_grid, reconstruction_grid

    rows, aug_rows = {}, {}
    images = aug = None
    data = {}  # (dataset, binarize, data_dir) -> ImageData, loaded once
    for label, run_dir in shown.items():
        tc = json.loads((Path(run_dir) / "config.json").read_text()).get("train", {})
        key = (tc.get("dataset"), tc.get("binarize"), tc.get("data_dir"))
        run = load_run(run_dir, data=data.get(key))
        data[key] = run.data
        own = run.data.test_images[:N_IMAGES]
        images = own if images is None else images
        aug = augmented_views(run.data, run.config.train.dataset) if aug is None else aug
        rec = run.reconstruct(own)  # discriminative runs: the post-hoc decoder their evaluation saved
        if rec is not None:
            name = label if run.method.generative else f"{label} (post-hoc decoder)"
            rows[name] = rec
            aug_rows[name] = reconstruct_views(run, *aug)
    reconstruction_grid(images, rows, path, title="the same test images, reconstructed by each method")
    out = [path]
    if aug_rows:
        augmentation_grid(*aug, aug_rows, path.with_name("augmentations.png"),
                          title="test images and augmented views (first row of each), reconstructed by each method")
        out.append(path.with_name("augmentations.png"))
    return out
