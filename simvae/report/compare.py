"""`simvae compare`: one table and one reconstruction figure across evaluated runs.

Rows are experiments, columns are k-NN, linear, MLP, GMM accuracy, NMI and ARI, as mean ±
standard error (sd / sqrt(n), n = number of runs in the row) where a row holds several runs (a
single run's standard error is left empty). Only like is averaged with like: runs share a row when
their experiment (``run_config.experiment_keys``: config.json's train and method sections but the
seed and ``NEUTRAL_TRAIN_KEYS``) and their evaluation settings (metrics.json's ``eval_config``, else
config.json's eval section, but its seed, device and map size) are equal. Rows of one method are
labelled by what differs, abbreviated ("simvae (ep=2, sub=3k)"; the notes spell the keys out).

Every row shows its training budget (epochs, optimiser steps, training images, views per step)
and its evaluation (``full``, ``quick``, ... from metrics.json's ``eval_name``). A row trained with
another budget than the reference row (the most common budget) is marked †, one evaluated with
other settings ‡, in the table, in the figures' labels and in one warning line on stderr: their
figures are not comparable with the others'.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections import Counter, OrderedDict
from pathlib import Path

from ..errors import RunDirError
from ..evaluate import NEUTRAL_EVAL_KEYS as _NAME_NEUTRAL_EVAL_KEYS
from ..evaluate.registry import METRICS, format_value, headline_keys
from ..run_config import experiment_keys
from ..rundir import CONFIG, SUMMARY
from ..rundir import METRICS as METRICS_FILE
from .model import Figure, Note, Report, Section, Table, blocks_markdown, to_markdown

COLUMNS = [(key, METRICS[key].label) for key in headline_keys()]  # from the one metric registry
TARGET_COLUMN = "mlp_acc"  # the figure shown for each other target (style, hair colour): its MLP probe
N_IMAGES = 12

# Evaluation settings that change no figure of the table: those of an evaluation's name (where it
# ran, the t-SNE map's size) and the seed (a row averages over seeds). Training's are
# run_config.NEUTRAL_TRAIN_KEYS.
NEUTRAL_EVAL_KEYS = frozenset({"seed", *_NAME_NEUTRAL_EVAL_KEYS})
_ABSENT = "(absent)"  # a key one run's config has and another's lacks (written by another version)

# Short names of the keys that tell a method's rows apart (labels stay short enough for a figure);
# comparison.md's notes spell each one out.
ABBREVIATIONS = {
    "epochs": "ep",
    "train_subset": "sub",
    "views_per_step": "vps",
    "batch_size": "bs",
    "n_views": "J",
    "latent_dim": "d",
    "prior_var": "pv",
    "likelihood_var": "lv",
    "network": "net",
    "binarize": "bin",
    "precision": "prec",
    "augment": "aug",
    "temperature": "T",
    "image_size": "px",
    "channels": "ch",
    "max_train_images": "eval-n",
    "probe_max_epochs": "probe-ep",
    "gmm_restarts": "gmm-r",
    "val_size": "val",
}
BUDGET_MARK, EVAL_MARK = "†", "‡"
MAX_LABEL_PARTS = 3  # further differing keys are counted ("+2 more"), not listed


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (None for a single value: it has none)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, None
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def _read_json(path: Path, fix: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON; {fix}") from None


def eval_signature(config: dict | None, eval_used: dict | None) -> dict[str, str] | None:
    """The evaluation settings that change the table's figures, {"eval.key": JSON text}: ``eval_used``
    (metrics.json's eval_config), else config.json's eval section, without NEUTRAL_EVAL_KEYS."""
    values = eval_used if eval_used is not None else (config or {}).get("eval")
    if values is None:
        return None
    return {f"eval.{k}": json.dumps(v, sort_keys=True) for k, v in values.items() if k not in NEUTRAL_EVAL_KEYS}


def experiment_config(config: dict, eval_used: dict | None) -> dict[str, str]:
    """The flattened configuration that defines a run's experiment: {"section.key": JSON text of the value},
    the experiment keys (``run_config.experiment_keys``) and the evaluation settings (``eval_signature``)."""
    return {**experiment_keys(config), **(eval_signature(config, eval_used) or {})}


def _short_number(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) and abs(value) >= 1000:
        for unit, div in (("M", 10**6), ("k", 10**3)):
            if abs(value) >= div and value % (div // 10) == 0:
                return f"{value / div:g}{unit}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt_value(key: str, text: str) -> str:
    if text == _ABSENT:
        return "absent"
    value = json.loads(text)
    if value is None:
        return "all" if key.endswith(("train_subset", "max_train_images")) else "none"
    if isinstance(value, list):
        return "+".join(map(str, value)) or "none"
    return value if isinstance(value, str) else _short_number(value)


def _abbrev(key: str) -> str:
    return ABBREVIATIONS.get(key, key)


def eval_kind(name: str | None) -> str:
    """'full', 'quick' or 'custom' (settings of neither preset: a hash ends the evaluation's name)."""
    if not name:
        return "?"
    if re.search(r"-[0-9a-f]{6}$", name):
        return "custom"
    return "quick" if name.startswith("quick") else "full"


def _summary(d: Path) -> dict:
    path = d / SUMMARY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def run_budget(metrics: dict, summary: dict, config: dict | None) -> dict:
    """What a run was trained with: epochs and steps of the model evaluated (metrics.json, else
    train_summary.json, else config.json), training images and views per step (train_summary.json,
    else config.json); None where unknown."""
    train = (config or {}).get("train") or {}
    epochs = metrics.get("model_epoch", summary.get("epochs", train.get("epochs")))
    epoch_step = metrics.get("model_epoch_step", summary.get("epoch_step", 0)) or 0
    steps = metrics.get("model_step", summary.get("steps"))
    images = summary.get("train_images", train.get("train_subset"))
    vps = summary.get("views_per_step", train.get("views_per_step") if train.get("batch_size") is None else None)
    return {"epochs": epochs, "epoch_step": epoch_step, "steps": steps, "train_images": images, "views_per_step": vps}


def _budget_key(b: dict) -> tuple:
    # steps follow from the rest and the method's views per image (12 x 10 or 64 x 2 views): not compared
    return b["epochs"], b["epoch_step"], b["train_images"], b["views_per_step"]


def _plural(n, one: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``, ``60,000 training images``."""
    shown = f"{n:,}" if isinstance(n, int) else str(n)
    return f"{shown} {one if n == 1 else (many or one + 's')}"


def describe_budget(b: dict) -> str:
    """``2 epochs, 32 steps, 512 training images, 64 views per step`` (what is known of it)."""
    parts = []
    if b["epochs"] is not None:
        parts.append(_plural(b["epochs"], "epoch") + (f" + {_plural(b['epoch_step'], 'step')}" if b["epoch_step"] else ""))
    if b["steps"] is not None:
        parts.append(_plural(b["steps"], "step"))
    if b["train_images"] is not None:
        parts.append(_plural(b["train_images"], "training image"))
    if b["views_per_step"] is not None:
        parts.append(f"{b['views_per_step']} views per step")
    return ", ".join(parts) or "unknown"


def read_runs(run_dirs: list[Path]) -> "OrderedDict[str, list[dict]]":
    """Row label -> metrics of each of its runs (in the order given).

    Each run's dict is its metrics.json plus "_dir", "_config" (experiment_config, or None without a
    config.json: such runs share a row per method), "_budget" (``run_budget``), "_eval" (the
    evaluation's name), "_eval_sig" (``eval_signature``) and "_split" (the keys that tell its method's
    rows apart; empty when the method has one row). Raises RunDirError for a missing folder, one
    without metrics.json, a damaged JSON file, a folder given twice, or runs on different data sets.
    """
    runs, seen, datasets = [], set(), set()
    for d in run_dirs:
        d = Path(d)
        if not d.exists():
            raise RunDirError(f"{d} does not exist; give the folder of an evaluated run")
        if not d.is_dir():
            raise RunDirError(f"{d} is not a folder; give the folder of an evaluated run")
        if d.resolve() in seen:
            raise RunDirError(f"{d} is given twice; give each run folder once")
        seen.add(d.resolve())
        mpath = d / METRICS_FILE
        if not mpath.is_file():
            hint = f"run 'simvae evaluate {d}' first" if (d / CONFIG).is_file() else "it holds no run (no config.json)"
            raise RunDirError(f"{d} has no {METRICS_FILE}; {hint}")
        m = _read_json(mpath, f"run 'simvae evaluate {d}' again")
        cpath = d / CONFIG
        config = _read_json(cpath, "the run folder is damaged") if cpath.is_file() else None
        cfg = experiment_config(config, m.get("eval_config")) if config is not None else None
        if cfg is not None and m.get("finished") is False:  # an unfinished model is its own experiment
            cfg["state.model_step"] = json.dumps(m.get("model_step"))
        datasets.add(m.get("dataset"))
        sig = eval_signature(config, m.get("eval_config"))
        runs.append(
            {
                **m,
                "_dir": str(d),
                "_config": cfg,
                "_budget": run_budget(m, _summary(d), config),
                "_eval": m.get("eval_name") or ("quick" if (m.get("eval_config") or {}).get("quick") else None),
                "_eval_sig": None if sig is None else tuple(sorted(sig.items())),
            }
        )
    if len(datasets) > 1:
        raise RunDirError(f"runs on different data sets ({', '.join(sorted(map(str, datasets)))}) cannot share one table")

    experiments: OrderedDict[tuple, list[dict]] = OrderedDict()
    for r in runs:
        key = (r.get("method", "?"), None if r["_config"] is None else tuple(sorted(r["_config"].items())))
        experiments.setdefault(key, []).append(r)
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for (method, key), members in experiments.items():
        configs = [rs[0]["_config"] for (m, k), rs in experiments.items() if m == method and k is not None]
        evals = {rs[0]["_eval"] for (m, k), rs in experiments.items() if m == method and k is not None}
        keys = list(OrderedDict.fromkeys(k for c in configs for k in c))  # in config.json's order
        split = [k for k in keys if len({c.get(k, _ABSENT) for c in configs}) > 1]
        eval_split = [k for k in split if k.startswith("eval.")]
        if len(eval_split) > 2 and len(evals) > 1:  # a preset (quick, full) changes many keys: name it instead
            split = [k for k in split if not k.startswith("eval.")] + ["eval"]
        shorts = [k.split(".", 1)[1] if "." in k else k for k in split]
        names = [s if shorts.count(s) == 1 else k for k, s in zip(split, shorts)]
        if key is None:
            parts = ["no config.json"] if configs else []
        else:
            parts = [
                f"eval={members[0]['_eval'] or '?'}"
                if k == "eval"
                else f"{_abbrev(n)}={_fmt_value(k, members[0]['_config'].get(k, _ABSENT))}"
                for k, n in zip(split, names)
            ]
            if len(parts) > MAX_LABEL_PARTS:
                parts = parts[:MAX_LABEL_PARTS] + [f"+{len(parts) - MAX_LABEL_PARTS} more"]
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


def _reference(groups, key) -> str | None:
    """The label of the reference row for ``key(first run) -> value``: the most common known value
    among rows (ties: a SimVAE row, else the first); None when no row's value is known."""
    values = {label: key(runs[0]) for label, runs in groups.items()}
    known = [v for v in values.values() if v is not None]
    if not known:
        return None
    counts = Counter(known)
    best = max(counts.values())
    tied = [label for label, v in values.items() if v is not None and counts[v] == best]
    return next((label for label in tied if groups[label][0].get("method") == "simvae"), tied[0])


def _budget_differs(a: dict, b: dict) -> bool:
    return any(x is not None and y is not None and x != y for x, y in zip(_budget_key(a), _budget_key(b)))


def comparability(groups) -> dict:
    """Which rows are not comparable with the others: {"budget_ref", "eval_ref" (labels or None),
    "budget" (labels trained with another budget than budget_ref), "eval" (labels evaluated with
    other settings than eval_ref), "marks" (label -> "", "†", "‡" or "†‡")}."""
    budget_ref = _reference(groups, lambda r: _budget_key(r["_budget"]) if r["_budget"]["epochs"] is not None else None)
    eval_ref = _reference(groups, lambda r: r["_eval_sig"])
    budget = [
        label
        for label, runs in groups.items()
        if budget_ref is not None and label != budget_ref and _budget_differs(runs[0]["_budget"], groups[budget_ref][0]["_budget"])
    ]
    evals = [
        label
        for label, runs in groups.items()
        if eval_ref is not None and runs[0]["_eval_sig"] is not None and runs[0]["_eval_sig"] != groups[eval_ref][0]["_eval_sig"]
    ]
    marks = {label: (BUDGET_MARK if label in budget else "") + (EVAL_MARK if label in evals else "") for label in groups}
    return {"budget_ref": budget_ref, "eval_ref": eval_ref, "budget": budget, "eval": evals, "marks": marks}


def _its(labels: list) -> str:
    return "Its" if len(labels) == 1 else "Their"


def comparability_notes(groups, comp: dict) -> list[str]:
    """The footnotes of the marks: what the reference row and each marked row were trained or evaluated with."""
    notes = []
    kinds = {"full": "the full protocol", "quick": "the quick preset", "custom": "custom settings", "?": "settings unknown"}
    if comp["budget"]:
        ref = comp["budget_ref"]
        notes.append(
            f"{BUDGET_MARK} training budget unlike the reference row's: {ref} trained "
            f"{describe_budget(groups[ref][0]['_budget'])}; "
            + "; ".join(f"{label} {describe_budget(groups[label][0]['_budget'])}" for label in comp["budget"])
            + f". {_its(comp['budget'])} figures are not comparable with the others'."
        )
    if comp["eval"]:
        ref = comp["eval_ref"]

        def ev(label):
            name = groups[label][0]["_eval"]
            return f"{name or 'an evaluation'} ({kinds[eval_kind(name)]})"

        notes.append(
            f"{EVAL_MARK} evaluation unlike the reference row's: {ref} was evaluated with {ev(ref)}; "
            + "; ".join(f"{label} with {ev(label)}" for label in comp["eval"])
            + f". {_its(comp['eval'])} figures are not comparable with the others'."
        )
    return notes


def columns_for(groups) -> list[tuple[str, str]]:
    """The table's columns: the headline metrics (content, generation), then the MLP probe of each
    other target the runs have (``style/flip``, ``hair_colour``; the many ``attr/`` targets are
    left to the per-attribute figure), content first, style after."""
    targets = sorted(
        {
            k.rsplit("/", 1)[0]
            for runs in groups.values()
            for r in runs
            for k in r
            if k.endswith("/" + TARGET_COLUMN) and not k.startswith("attr/")
        },
        key=lambda t: (t.startswith("style/"), t),
    )
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
    return (
        "Style targets: what the augmentation did to one view of each image, predicted from its representation; "
        "chance (the most frequent class): " + ", ".join(f"{t} {100 * v:.1f}" for t, v in sorted(chances.items())) + "."
    )


BUDGET_COLUMNS = [
    ("epochs", "epochs"),
    ("steps", "steps"),
    ("train_images", "train images"),
    ("views_per_step", "views/step"),
    ("eval_name", "evaluation"),
]


def comparison_rows(groups, columns=None) -> list[dict]:
    """One row per group: label, method, number of runs, mean and standard error of each column (no
    standard error for a single run), its budget (epochs, steps, train_images, views_per_step), its
    evaluation (eval_name, eval_kind) and "mark" (see ``comparability``)."""
    marks = comparability(groups)["marks"]
    rows = []
    for label, runs in groups.items():
        b = runs[0]["_budget"]
        epochs = None if b["epochs"] is None else (f"{b['epochs']}+{b['epoch_step']}st" if b["epoch_step"] else b["epochs"])
        row = {
            "method": runs[0].get("method", "?"),
            "label": label,
            "n_runs": len(runs),
            "mark": marks[label],
            "epochs": epochs,
            "steps": b["steps"],
            "train_images": b["train_images"],
            "views_per_step": b["views_per_step"],
            "eval_name": runs[0]["_eval"],
            "eval_kind": eval_kind(runs[0]["_eval"]),
        }
        for key, _ in columns or COLUMNS:
            vals = [r[key] for r in runs if key in r]
            if vals:
                row[key], row[key + "_se"] = mean_se(vals)
        rows.append(row)
    return rows


def grouping_notes(groups) -> list[str]:
    """Lines saying which keys split a method's rows (spelling out their short names), and which runs
    had no config.json."""
    notes, done = [], set()
    for runs in groups.values():
        method = runs[0].get("method", "?")
        if runs[0].get("_split") and method not in done:
            done.add(method)
            named = [
                ("evaluation settings (eval)" if n == "eval" else f"{n} ({_abbrev(n)})" if _abbrev(n) != n else n)
                for n in runs[0]["_split"]
            ]
            notes.append(
                f"Rows of {method} differ in {', '.join(named)}; runs share a row only when their whole "
                "configuration matches except the seed (and device, threads, data folder, checkpointing)."
            )
    bare = [r["_dir"] for runs in groups.values() for r in runs if r.get("_config") is None]
    if bare:
        notes.append(f"No config.json in {', '.join(bare)}: grouped by method only, so their rows may mix experiments.")
    return notes


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def comparison_table(rows: list[dict], dataset: str, columns=None) -> Table:
    columns = columns or COLUMNS
    cells = [
        [r.get("label", r["method"]) + r.get("mark", ""), str(r["n_runs"])]
        + [format_value(key, r.get(key), r.get(key + "_se") if r["n_runs"] > 1 else None) for key, _ in columns]
        + [_cell(r.get(key)) for key, _ in BUDGET_COLUMNS]
        for r in rows
    ]
    return Table(
        ["method", "runs"] + [name for _, name in columns] + [name for _, name in BUDGET_COLUMNS],
        cells,
        f"Test-set figures on {dataset} (accuracies in %; mean ± standard error over runs where runs > 1; "
        "recon. MSE per pixel in [0, 1], lower is better; FIDs lower is better), and what each row was trained "
        "and evaluated with (epochs and steps of the model evaluated; evaluation: full, quick or custom settings).",
    )


def markdown_table(rows: list[dict], dataset: str, notes: list[str] = (), columns=None) -> str:
    return blocks_markdown([comparison_table(rows, dataset, columns)] + [Note(f"Note: {n}") for n in notes])


def _warn(line: str) -> None:
    print(f"simvae: warning: {line}", file=sys.stderr, flush=True)


def compare_runs(run_dirs: list[Path], out_dir: Path, figure: bool = True, overwrite: bool = False, warn=_warn) -> list[Path]:
    """Write comparison.md, comparison.csv and (where a run has a checkpoint) reconstructions.png into
    ``out_dir``; return the paths written. ``warn(line)`` (default: a line on stderr) is called once
    when rows differ in budget or evaluation settings (``comparability``).

    Raises RunDirError when ``out_dir`` already holds comparison.md (unless ``overwrite``), and as
    read_runs does."""
    out_dir = Path(out_dir)
    md = out_dir / "comparison.md"
    if md.exists() and not overwrite:
        raise RunDirError(f"{out_dir} already holds a comparison ({md.name}); pass --overwrite to replace it or choose another --out")
    groups = read_runs(run_dirs)
    columns = columns_for(groups)
    rows = comparison_rows(groups, columns)
    dataset = next(iter(groups.values()))[0].get("dataset", "?")
    comp = comparability(groups)
    notes = comparability_notes(groups, comp) + grouping_notes(groups)
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
    report = Report(
        "simvae comparison",
        [
            Section("Results", [comparison_table(rows, dataset, columns)] + [Note(f"Note: {n}") for n in notes]),
            Section(
                "Runs",
                [
                    Note(
                        "\n".join(
                            f"- {label}{comp['marks'][label]}: {', '.join(r['_dir'] for r in runs)}" for label, runs in groups.items()
                        )
                    )
                ],
            ),
        ],
    )
    for title, fname, caption in content_style_figures(groups, rows, out_dir, comp["marks"]):
        report.sections.insert(1, Section(title, [Figure(fname, caption)]))
        paths.append(out_dir / fname)
    if shown:
        report.sections.insert(
            1,
            Section(
                "Reconstructions",
                [
                    Figure("reconstructions.png", "the same test images, reconstructed by each row's first run"),
                    Figure("augmentations.png", "augmented views and each row's reconstructions of them"),
                ],
            ),
        )
    md.write_text(to_markdown(report))
    csv_path = out_dir / "comparison.csv"
    fields = (
        ["method", "n_runs"]
        + [k for key, _ in columns for k in (key, key + "_se")]
        + ["label"]
        + [key for key, _ in BUDGET_COLUMNS]
        + ["eval_kind", "comparable"]
    )
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    **{k: r.get(k, "") for k in fields},
                    "comparable": {"": "yes", BUDGET_MARK: "no: budget", EVAL_MARK: "no: evaluation"}.get(
                        r["mark"], "no: budget, evaluation"
                    ),
                }
            )
    paths = [md, csv_path] + paths
    if shown:
        paths += reconstruction_figure({label + comp["marks"][label]: d for label, d in shown.items()}, out_dir / "reconstructions.png")
    marked = [label + comp["marks"][label] for label in groups if comp["marks"][label]]
    if marked and warn is not None:
        what = " and ".join(w for w, on in (("training budget", comp["budget"]), ("evaluation settings", comp["eval"])) if on)
        warn(
            f"{', '.join(marked)} differ{'s' if len(marked) == 1 else ''} from the other rows in {what}: not comparable "
            f"with them (see the notes in {md})"
        )
    return paths


def _style_targets(groups) -> list[str]:
    """The non-content targets the runs were scored on (their MLP probe), content-like first."""
    return sorted(
        {k.rsplit("/", 1)[0] for runs in groups.values() for r in runs for k in r if k.endswith("/" + TARGET_COLUMN)},
        key=lambda t: (t.startswith("style/"), t.startswith("attr/"), t),
    )


def content_style_figures(groups, rows, out_dir: Path, marks: dict | None = None) -> list[tuple[str, str, str]]:
    """content_style.png (content MLP accuracy against style: CelebA's hair colour, else the mean
    over the style/ targets; paper Fig. 5 middle) and target_gains.png (per-target accuracies, and
    the gains of SimVAE over each method; Fig. 5 right, Fig. 6) where the runs have other targets.
    Labels carry the rows' marks (``comparability``). Returns (section title, file name, caption) of
    each figure written."""
    from .figures import content_style_scatter, target_accuracies_and_gains

    marks = marks if marks is not None else comparability(groups)["marks"]
    mark_note = (
        (
            f"{BUDGET_MARK} trained with another budget, {EVAL_MARK} evaluated with other settings than the other rows: "
            "not comparable with them (see comparison.md)"
        )
        if any(marks.values())
        else ""
    )

    targets = _style_targets(groups)
    if not targets:
        return []
    style = [t for t in targets if t == "hair_colour"] or [t for t in targets if t.startswith("style/")] or targets
    what = style[0] if len(style) == 1 else f"mean of {len(style)} style targets"
    listed = ", ".join(style)
    points = []
    for label, runs in groups.items():
        xs = [r["mlp_acc"] for r in runs if "mlp_acc" in r]
        ys = [sum(r[f"{t}/{TARGET_COLUMN}"] for t in style) / len(style) for r in runs if all(f"{t}/{TARGET_COLUMN}" in r for t in style)]
        if xs and ys:
            (x, x_se), (y, y_se) = mean_se(xs), mean_se(ys)
            points.append({"label": label + marks.get(label, ""), "x": x, "y": y, "x_se": x_se, "y_se": y_se})
    out = []
    if points:
        content_style_scatter(
            points,
            out_dir / "content_style.png",
            "content: MLP probe on the class (%)",
            f"style: MLP probe, {what} (%)",
            "content against style (test set)",
            note=mark_note,
        )
        out.append(
            (
                "Content against style",
                "content_style.png",
                f"x: content accuracy; y: {what} ({listed}); error bars: standard error over runs"
                + ("; † / ‡: trained / evaluated unlike the other rows (see the notes)" if any(marks.values()) else ""),
            )
        )
    simvae_rows = [r["label"] for r in rows if r["method"] == "simvae"]  # an unmarked one where there is one
    reference = next((label for label in simvae_rows if not marks.get(label)), simvae_rows[0] if simvae_rows else None)
    if reference is not None and len(rows) > 1:

        def mean_of(runs, key):
            vals = [r[key] for r in runs if key in r]
            return mean_se(vals)[0] if vals else float("nan")

        accs = {label + marks.get(label, ""): [mean_of(runs, f"{t}/{TARGET_COLUMN}") for t in targets] for label, runs in groups.items()}
        first = [r for runs in groups.values() for r in runs]
        chance = [next((r[f"{t}/chance"] for r in first if f"{t}/chance" in r), float("nan")) for t in targets]
        ref = reference + marks.get(reference, "")
        target_accuracies_and_gains(
            targets,
            accs,
            ref,
            out_dir / "target_gains.png",
            "MLP probe accuracy per target, and the reference row's gain over each row",
            chance=chance,
            note=mark_note,
        )
        out.append(
            (
                "Per-target accuracy and SimVAE's gains",
                "target_gains.png",
                "top: test accuracy of the MLP probe per target (grey bars: chance, the most frequent test "
                f"class, where recorded); bottom: the reference row {ref} minus each other row, in points"
                + ("; † / ‡: trained / evaluated unlike the other rows (see the notes)" if any(marks.values()) else ""),
            )
        )
    return out


def figure_runs(groups) -> tuple[dict[str, str], list[str]]:
    """The run folder shown for each row (its first run with checkpoint.pt and config.json), and a
    line for each row left out of the figure."""
    from ..checkpoint import CHECKPOINT_NAME

    shown, skipped = {}, []
    for label, runs in groups.items():
        usable = [
            r["_dir"]
            for r in runs
            if (Path(r["_dir"]) / CHECKPOINT_NAME).is_file()
            and (Path(r["_dir"]) / "config.json").is_file()
            and ("recon_mse" in r or (Path(r["_dir"]) / "decoder.pt").is_file())
        ]
        if usable:
            shown[label] = usable[0]
        else:
            skipped.append(
                f"{label} left out (no {CHECKPOINT_NAME}, config.json and decoder in "
                f"{', '.join(r['_dir'] for r in runs)}; 'simvae evaluate' fits a discriminative run's decoder)"
            )
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
        aug = augmented_views(run.data, run.augment_spec) if aug is None else aug
        rec = run.reconstruct(own)  # discriminative runs: the post-hoc decoder their evaluation saved
        if rec is not None:
            name = label if run.method.generative else f"{label} (post-hoc decoder)"
            rows[name] = rec
            aug_rows[name] = reconstruct_views(run, *aug)
    reconstruction_grid(images, rows, path, title="the same test images, reconstructed by each method")
    out = [path]
    if aug_rows:
        augmentation_grid(
            *aug,
            aug_rows,
            path.with_name("augmentations.png"),
            title="test images and augmented views (first row of each), reconstructed by each method",
        )
        out.append(path.with_name("augmentations.png"))
    return out
