"""One self-contained HTML report (``simvae report DIR``): the report model rendered with jinja2.

``render_html(report, base)`` lays out a ``model.Report`` (sections of tables, figures, notes and
code) as one HTML file; each figure (a PNG path relative to ``base``) is embedded as a data URI,
so the file needs nothing beside it and loads no external resource. ``folder_report(DIR)`` builds
the report of a grid folder (``simvae reproduce``: the paper's tables, the claims, each method's
figures, each run's provenance), a sweep folder (``simvae sweep``: the table and plots) or a single
run folder (its metrics, figures and provenance).
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path

from ..errors import RunDirError
from ..evaluate.registry import format_value, metric, report_keys
from ..rundir import atomic_write
from .model import Code, Figure, Note, Report, Section, Table

REPORT_HTML = "report.html"
RUN_FIGURES = [
    ("reconstructions.png", "test images and their reconstructions"),
    ("samples.png", "class-conditional samples (paper Fig. 10)"),
    ("augmentations.png", "augmented views and their reconstructions"),
    ("latent_map.png", "t-SNE map of the test representations"),
    ("loss_curve.png", "training loss"),
]


def data_uri(path: Path) -> str | None:
    """``path`` as a base64 data URI, or None when it is not a readable file."""
    try:
        payload = path.read_bytes()
    except OSError:
        return None
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _block(block, base: Path) -> dict:
    if isinstance(block, Table):
        return {
            "kind": "table",
            "columns": [str(c) for c in block.columns],
            "rows": [[str(c) for c in row] for row in block.rows],
            "caption": block.caption,
        }
    if isinstance(block, Figure):
        return {"kind": "figure", "path": block.path, "caption": block.caption, "src": data_uri(base / block.path)}
    if isinstance(block, Note):
        return {"kind": "note", "text": block.text, "level": block.level}
    if isinstance(block, Code):
        return {"kind": "code", "text": block.text, "lang": block.lang}
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(report: Report, base: str | Path) -> str:
    """The HTML text of ``report``; figure paths are relative to ``base`` and embedded."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("simvae.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    base = Path(base)
    model = {
        "title": report.title,
        "notes": [_block(n, base) for n in report.notes],
        "sections": [{"title": s.title, "blocks": [_block(b, base) for b in s.blocks]} for s in report.sections],
    }
    return env.get_template("report.html.j2").render(report=model)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def provenance_rows(name: str, summary: dict | None, metrics: dict | None) -> list[str]:
    s, m = summary or {}, metrics or {}
    return [
        name,
        str(s.get("method", m.get("method", "?"))),
        f"{s.get('epochs', '?')} of {s.get('epochs_planned', '?')}",
        str(s.get("steps", "?")),
        f"{s.get('images_per_step', '?')} x {s.get('n_views', '?')}",
        str(s.get("train_images", "?")),
        f"{s['train_seconds']:.0f} s" if isinstance(s.get("train_seconds"), (int, float)) else "?",
        f"{m['eval_seconds']:.0f} s" if isinstance(m.get("eval_seconds"), (int, float)) else "–",
        f"{s.get('device', '?')}, {s.get('threads', '?')} thr., {s.get('precision', '?')}",
        str(s.get("simvae_commit") or "unknown"),
        str(s.get("host", "?")),
        str(s.get("date", "?")),
    ]


PROVENANCE_COLUMNS = [
    "run",
    "method",
    "epochs",
    "steps",
    "images x views / step",
    "training images",
    "training time",
    "evaluation time",
    "device",
    "simvae commit",
    "host",
    "date",
]


def _run_figures(folder: Path, eval_folder: Path, base: Path, who: str) -> list[Figure]:
    figs = []
    for fname, what in RUN_FIGURES:
        for where in (eval_folder, folder):
            if (where / fname).is_file():
                figs.append(Figure(_rel(where / fname, base), f"{who}: {what}"))
                break
    return figs


def run_report(folder: str | Path) -> Report:
    """The report of one run folder: its metrics (test set), figures, provenance and config.
    Raises RunDirError when it holds no run."""
    folder = Path(folder)
    config = _read(folder / "config.json")
    if config is None:
        raise RunDirError(f"{folder} holds no run (no readable config.json), grid.json or sweep")
    metrics, summary = _read(folder / "metrics.json"), _read(folder / "train_summary.json")
    train = config.get("train", {})
    report = Report(f"simvae run: {train.get('method')} on {train.get('dataset')} ({folder.name})")
    if metrics is None:
        report.notes.append(Note(f"not evaluated yet: run 'simvae evaluate {folder}'", "warning"))
    else:
        if not metrics.get("finished", True):
            report.notes.append(
                Note(
                    f"the model evaluated did not finish training (epoch {metrics.get('model_epoch')} of {metrics.get('epochs_planned')})",
                    "warning",
                )
            )
        rows = [[metric(k).label, format_value(k, metrics[k])] for k in report_keys() if k in metrics]
        report.sections.append(
            Section(
                "Metrics (test set)", [Table(["metric", "value"], rows, f"evaluation '{metrics.get('eval_name', '?')}'; accuracies in %")]
            )
        )
        targets = sorted({k.rsplit("/", 1)[0] for k in metrics if k.endswith("/mlp_acc")})
        if targets:
            report.sections.append(
                Section(
                    "Other targets (style, attributes)",
                    [
                        Table(
                            ["target", "k-NN", "linear", "MLP", "chance"],
                            [
                                [t]
                                + [
                                    format_value(f"{t}/{k}", metrics.get(f"{t}/{k}"))
                                    for k in ("knn_acc", "linear_acc", "mlp_acc", "chance")
                                ]
                                for t in targets
                            ],
                            "accuracy on the test set (%)",
                        )
                    ],
                )
            )
    figs = _run_figures(folder, folder, folder, train.get("method", "run"))
    if figs:
        report.sections.append(Section("Figures", figs))
    report.sections.append(
        Section(
            "Provenance",
            [Table(PROVENANCE_COLUMNS, [provenance_rows(folder.name, summary, metrics)])]
            + ([Code(json.dumps(summary, indent=2), "json")] if summary else []),
        )
    )
    report.sections.append(Section("Configuration", [Code(json.dumps(config, indent=2), "json")]))
    return report


def grid_report(folder: str | Path) -> Report:
    """The report of a grid folder (reproduce or sweep). Raises RunDirError without grid.json."""
    from .claims import claims_section
    from .tables import DATASET_LABELS, build_tables, read_grid, sweep_blocks

    folder = Path(folder)
    grid = read_grid(folder)
    ds = DATASET_LABELS.get(grid["dataset"], grid["dataset"])
    done = sum(r["metrics"] is not None for r in grid["runs"])
    if grid["kind"] == "sweep":
        report = Report(f"simvae sweep: {grid.get('param')} on {ds} ({', '.join(grid['methods'])})")
        report.sections.append(Section("Sweep", sweep_blocks(folder, grid)))
    else:
        report = Report(f"simvae reproduce: {ds}, {len(grid['methods'])} method(s) x {len(grid['seeds'])} seed(s)")
        tables = build_tables(grid)
        for _, title, table, _, notes in tables:
            report.sections.append(Section(title, [table] + [Note(n) for n in notes]))
        report.sections.insert(0, claims_section(grid))
    if done < len(grid["runs"]):
        report.notes.append(
            Note(
                f"{len(grid['runs']) - done} of {len(grid['runs'])} runs are not evaluated yet: their figures are missing from the tables",
                "warning",
            )
        )
    if grid.get("command"):
        report.notes.append(Note("command: " + " ".join(grid["command"])))
    figs, seen = [], set()
    for r in grid["runs"]:
        key = (r["method"], r.get("value"))
        if key in seen or r["metrics"] is None:
            continue
        seen.add(key)
        who = r["name"]
        figs += _run_figures(Path(r["folder"]), Path(r["folder"]) / "eval" / r["eval_name"], folder, who)
    if figs:
        report.sections.append(
            Section("Run figures (first evaluated seed of each " + ("method and value)" if grid["kind"] == "sweep" else "method)"), figs)
        )
    report.sections.append(
        Section(
            "Provenance",
            [
                Table(
                    PROVENANCE_COLUMNS,
                    [provenance_rows(r["name"], r["summary"], r["metrics"]) for r in grid["runs"]],
                    "each run's train_summary.json and evaluation",
                )
            ],
        )
    )
    return report


def folder_report(folder: str | Path) -> Report:
    """The report of a grid, sweep or run folder. Raises RunDirError for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError(f"{folder} is not a folder")
    if (folder / "grid.json").is_file():
        return grid_report(folder)
    return run_report(folder)


def write_html_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of ``folder`` to ``out`` (default ``folder/report.html``)."""
    folder = Path(folder)
    out = Path(out) if out else folder / REPORT_HTML
    report = folder_report(folder)
    base = folder
    return atomic_write(out, render_html(report, base))
