"""Orchestration: train -> fit post-hoc decoders -> evaluate -> report, for the CLI and the API.

The only module that sequences the layers: training never evaluates, evaluation returns
metrics (and writes metrics.json), reports read run folders.
"""

from __future__ import annotations

import sys
from pathlib import Path


def evaluate_and_report(path: str | Path, overrides: dict | None = None, quiet: bool = False, quick: bool = False,
                        device: str | None = None) -> dict:
    """Evaluate run folder ``path`` and write its report: fits a post-hoc decoder for a
    discriminative method (saved as decoder.pt, reused while newer than the checkpoint), writes
    metrics.json and report.md with its figures, and returns the metrics. A run that did not
    finish is evaluated as it stands, with a one-line warning (and marked so in its report)."""
    from .evaluate import eval_config_for, evaluate_run
    from .evaluate.decoder_fit import ensure_decoder
    from .report import write_report
    from .run import load_run

    path = Path(path)
    overrides = dict(overrides or {})
    run = load_run(path, device=device or overrides.get("device", "auto"))
    cfg = eval_config_for(run, overrides, quick)

    def log(msg: str) -> None:
        if not quiet:
            print(f"[evaluate] {msg}", file=sys.stderr, flush=True)

    if run.state and not run.state["finished"]:
        print(f"simvae: warning: {path} did not finish training: evaluating the model at {run.describe_state()}; "
              f"continue it with 'simvae train --resume {path}'", file=sys.stderr, flush=True)
    if not run.method.generative and getattr(run.method, "posthoc_decoder", None) is None:
        ensure_decoder(run, log=log, max_epochs=cfg.decoder_max_epochs, patience=cfg.decoder_patience)
    metrics = evaluate_run(path, quiet=quiet, run=run, cfg=cfg)
    write_report(run, metrics, cfg)
    log(f"report written to {path / 'report.md'}")
    return metrics
