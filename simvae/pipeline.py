"""Orchestration: train -> fit post-hoc decoders -> evaluate -> report, for the CLI and the API.

The only module that sequences the layers and the only one that loads a run for evaluation:
training never evaluates, evaluation returns an ``Evaluation`` (metrics, representations,
reconstructions), and the report draws from it without encoding the images again.
"""

from __future__ import annotations

import sys
from pathlib import Path


def check_evaluators(eval_cfg) -> None:
    """Refuse (ConfigError, one line) evaluator names in ``eval_cfg.skip`` that are not registered,
    before any work starts."""
    from .evaluate import check_evaluator_names

    check_evaluator_names(eval_cfg.skip)


def evaluate_and_report(
    path: str | Path, overrides: dict | None = None, quiet: bool = False, quick: bool | None = None, device: str | None = None
) -> dict:
    """Evaluate run folder ``path`` and write its report; return the metrics.

    Fits a post-hoc decoder for a discriminative method (saved as decoder.pt, reused while newer
    than the checkpoint), evaluates (``simvae.evaluate.evaluate``), keeps the evaluation under
    ``eval/NAME/`` with its report and figures, and makes it the run's headline (metrics.json,
    report.md and figures at the top of the folder) when it is the full protocol or the run has
    none. A run that did not finish is evaluated as it stands, with a one-line warning (and
    marked so in its report). Raises SimvaeError (RunDirError while another process writes the folder)."""
    from .evaluate import eval_config_for, evaluate, is_headline, write_evaluation
    from .evaluate.decoder_fit import ensure_decoder
    from .report import publish_headline, write_report
    from .run import load_run
    from .run_config import load_run_config
    from .rundir import RunLock

    path = Path(path)
    overrides = dict(overrides or {})
    load_run_config(path)  # a folder that holds no run is refused before anything is written into it
    with RunLock(path, "simvae evaluate"):
        run = load_run(path, device=device or overrides.get("device", "auto"))
        cfg = eval_config_for(run, overrides, quick)

        def log(msg: str) -> None:
            if not quiet:
                print(f"[evaluate] {msg}", file=sys.stderr, flush=True)

        if run.state and not run.state["finished"]:
            print(
                f"simvae: warning: {path} did not finish training: evaluating the model at {run.describe_state()}; "
                f"continue it with 'simvae train --resume {path}'",
                file=sys.stderr,
                flush=True,
            )
        if not run.method.generative and getattr(run.method, "posthoc_decoder", None) is None:
            ensure_decoder(run, log=log, max_epochs=cfg.decoder_max_epochs, patience=cfg.decoder_patience)
        evaluation = evaluate(run, cfg, log)
        folder = write_evaluation(path, evaluation)
        write_report(run, evaluation, folder)
        if is_headline(path, evaluation.name):
            publish_headline(folder, path)
            log(f"report written to {path / 'report.md'} (evaluation '{evaluation.name}', kept in {folder})")
        else:
            log(f"report written to {folder / 'report.md'}; the run's headline stays its full evaluation ({path / 'metrics.json'})")
    return evaluation.metrics
