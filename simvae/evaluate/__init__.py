"""Evaluation of frozen representations (paper §6, A.7.5), with an honest protocol:
k, probe epochs and other settings are chosen on a validation split held out of the
training set, and test figures are measured once."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import parse_config
from ..run_config import EvalConfig
from .generation import generation_evaluator
from .gmm import gmm_evaluate
from .knn import knn_evaluate
from .probes import train_probes
from .progress import every
from .style import style_evaluator

from .registry import EVALUATORS, METRICS, RUN_EVALUATORS, Target, register_evaluator, register_run_evaluator  # noqa: F401 (API)


def split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random split of the training indices into (fit, validation)."""
    val_size = min(val_size, max(1, n // 5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


class Context:
    """What every evaluator of one representation shares: the features, the fit/validation split
    of the training images, and features standardised by the fit split's statistics."""

    def __init__(self, train_x: torch.Tensor, test_x: torch.Tensor, cfg: EvalConfig):
        self.train_x, self.test_x, self.cfg = train_x, test_x, cfg
        self.fit_idx, self.val_idx = split_train_val(train_x.shape[0], cfg.val_size, cfg.seed)
        mean, std = train_x[self.fit_idx].mean(0), train_x[self.fit_idx].std(0) + 1e-8
        self.z_train, self.z_test = (train_x - mean) / std, (test_x - mean) / std


def _labelled(idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return idx[y[idx] >= 0]


def knn_evaluator(ctx: Context, target: Target, log) -> dict:
    """k-NN with k chosen on the validation split (paper A.7.5; Euclidean, majority vote)."""
    t = time.monotonic()
    y, ty = target.train, target.test
    fit, val = _labelled(ctx.fit_idx, y), _labelled(ctx.val_idx, y)
    all_train = torch.nonzero(y >= 0).squeeze(1)
    test = torch.nonzero(ty >= 0).squeeze(1)
    out = knn_evaluate(ctx.train_x[fit], y[fit], ctx.train_x[val], y[val], ctx.train_x[all_train], y[all_train],
                       ctx.test_x[test], ty[test], ctx.cfg.knn_max_k, target.n_classes)
    log(f"{target.prefix()}k-NN: k={out['knn_k']} (chosen on validation) test acc {out['knn_acc']:.4f} "
        f"({time.monotonic() - t:.1f}s)")
    return out


def _or_inf(x: float) -> float:
    return float("inf") if x != x else x


def probe_evaluator(ctx: Context, targets: list[Target], log) -> dict:
    """Linear and MLP probes of every target, trained together as disjoint heads of one module
    (one loop, each head stopped on its own validation loss); with ``paper_probes`` also the
    paper's fixed-epoch protocol on all training images. Keys are prefixed by each target's name."""
    cfg = ctx.cfg
    y = torch.stack([t.train for t in targets], 1)  # [N, T], -1 where an image has no label
    ty = torch.stack([t.test for t in targets], 1)
    fit, val = ctx.fit_idx[(y[ctx.fit_idx] >= 0).any(1)], ctx.val_idx[(y[ctx.val_idx] >= 0).any(1)]
    test = torch.nonzero((ty >= 0).any(1)).squeeze(1)
    hidden = cfg.probe_hidden or ctx.train_x.shape[1]  # the paper's code: hidden width = representation size
    classes = [t.n_classes for t in targets]
    opts = dict(lr=cfg.probe_lr, batch_size=cfg.probe_batch_size, max_epochs=cfg.probe_max_epochs,
                patience=cfg.probe_patience, hidden=hidden, seed=cfg.seed)
    # the linear probe's learning rate is chosen on validation among probe_lr x {1, 3, 10} (at the
    # paper's 3e-4 alone it is often still improving after 200 epochs); the MLP keeps probe_lr
    lrs = [cfg.probe_lr * f for f in ((1, 3, 10) if cfg.linear_lr_search else (1,))]
    heads: dict = {}
    for i, target in enumerate(targets):  # content heads keep their bare names (and so their initialisation)
        p = target.prefix()
        heads[f"{p}mlp"] = ("mlp", cfg.probe_lr, i)
        heads.update({f"{p}linear_lr{j}": ("linear", lr, i) for j, lr in enumerate(lrs)})
    t = time.monotonic()
    what = "" if len(targets) == 1 else f" of {len(targets)} targets ({len(heads)} heads in one loop)"
    log(f"{targets[0].prefix() if len(targets) == 1 else ''}training the linear and MLP probes{what} "
        f"(up to {cfg.probe_max_epochs} epochs, stopped on validation)")
    trained = train_probes(heads, ctx.z_train[fit], y[fit], ctx.z_train[val], y[val], ctx.z_test[test], ty[test], classes,
                           progress=every(30.0, lambda e, n, el: log(f"  probes: epoch {e} of at most {n}, {el:.0f}s "
                                                                       f"(at most {el / e * (n - e):.0f}s more)")),
                           **opts)
    out: dict = {}
    for target in targets:
        p = target.prefix()
        best = min(range(len(lrs)), key=lambda j: _or_inf(trained[f"{p}linear_lr{j}"]["val_loss"]))
        probes = {"linear": trained[f"{p}linear_lr{best}"], "mlp": trained[f"{p}mlp"]}
        out[f"{p}probe_hidden"], out[f"{p}linear_lr"] = hidden, lrs[best]
        for kind, r in probes.items():
            out.update({f"{p}{kind}_acc": r["acc"], f"{p}{kind}_val_acc": r["val_acc"], f"{p}{kind}_epochs": r["epochs"],
                        f"{p}{kind}_epochs_run": r["epochs_run"], f"{p}{kind}_capped": r["capped"]})
        capped = [k for k, r in probes.items() if r["capped"]]
        log(f"{p}probes: linear {probes['linear']['acc']:.4f} (lr {lrs[best]:g} chosen on validation, epoch "
            f"{probes['linear']['epochs']}), MLP {probes['mlp']['acc']:.4f} (epoch {probes['mlp']['epochs']})"
            + (f"; {' and '.join(capped)} stopped at the epoch cap, it may still have been improving" if capped else ""))
    log(f"probes trained in {time.monotonic() - t:.1f}s")
    if cfg.paper_probes:  # the paper's protocol: fixed epochs on the whole training set, scored once on test
        t = time.monotonic()
        labelled = torch.nonzero((y >= 0).any(1)).squeeze(1)
        kinds = {f"{target.prefix()}{kind}": (kind, cfg.probe_lr, i) for i, target in enumerate(targets)
                 for kind in ("linear", "mlp")}
        fixed = train_probes(kinds, ctx.z_train[labelled], y[labelled], None, None, ctx.z_test[test], ty[test], classes, **opts)
        for name, r in fixed.items():
            out[f"{name}_acc_paper_protocol"] = r["acc"]
        log(f"probes, paper protocol ({cfg.probe_max_epochs} epochs on all training images): "
            + ", ".join(f"{name} {r['acc']:.4f}" for name, r in fixed.items()) + f" ({time.monotonic() - t:.1f}s)")
    return out


def gmm_evaluator(ctx: Context, target: Target, log) -> dict:
    """A full-covariance GMM with one component per class; accuracy (Hungarian), NMI, ARI."""
    t = time.monotonic()
    cfg = ctx.cfg
    y, ty = target.train, target.test
    tr, te = torch.nonzero(y >= 0).squeeze(1), torch.nonzero(ty >= 0).squeeze(1)
    log(f"{target.prefix()}fitting the Gaussian mixture ({target.n_classes} components, {cfg.gmm_restarts} restarts, "
        f"{len(tr)} {ctx.train_x.shape[1]}-d points; about 6 s a restart on 50,000 10-d points on one CPU core)")
    out = gmm_evaluate(ctx.train_x[tr].numpy().astype(np.float64), y[tr].numpy(), ctx.test_x[te].numpy().astype(np.float64),
                       ty[te].numpy(), target.n_classes, cfg.gmm_restarts, cfg.gmm_max_iter, cfg.seed)
    log(f"{target.prefix()}GMM: acc {out['gmm_acc']:.4f} NMI {out['gmm_nmi']:.4f} ARI {out['gmm_ari']:.4f} "
        f"({cfg.gmm_restarts} restarts, {time.monotonic() - t:.1f}s)")
    return out


register_evaluator("knn", knn_evaluator)
register_evaluator("probes", probe_evaluator, joint=True)
register_evaluator("gmm", gmm_evaluator, applies_to=lambda target: target.role == "content")
register_run_evaluator("generation", generation_evaluator)
register_run_evaluator("style", style_evaluator)


@dataclass
class Representations:
    """What a run evaluator gets: the representations of the un-augmented training images
    train_x [N, d] and test images test_x [M, d] (CPU), and the data set's targets (content first)."""

    train_x: torch.Tensor
    test_x: torch.Tensor
    targets: list


def evaluate_targets(train_x: torch.Tensor, test_x: torch.Tensor, targets: list[Target], cfg: EvalConfig | None = None,
                     log=None, skip: tuple[str, ...] = ()) -> dict:
    """Every registered evaluator on every target it applies to: representations train_x [N, d]
    and test_x [M, d] (float, CPU); returns metrics keyed by target prefix + metric key."""
    cfg = cfg or EvalConfig()
    log = log or (lambda msg: None)
    ctx = Context(train_x, test_x, cfg)
    metrics: dict = {"n_train": int(train_x.shape[0]), "n_fit": int(ctx.fit_idx.numel()), "n_val": int(ctx.val_idx.numel()),
                     "n_test": int(test_x.shape[0])}
    for entry in EVALUATORS.values():
        chosen = [t for t in targets if entry.applies_to(t)]
        if entry.name in skip or not chosen:
            continue
        if entry.joint:  # one call for all its targets; keys come prefixed
            metrics.update(entry.fn(ctx, chosen, log))
            continue
        for target in chosen:
            metrics.update({target.prefix() + k: v for k, v in entry.fn(ctx, target, log).items()})
    return metrics


def evaluate_representations(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                             n_classes: int, cfg: EvalConfig | None = None, log=None) -> dict:
    """k-NN, probes and GMM on one content target (class labels train_y [N], test_y [M])."""
    return evaluate_targets(train_x, test_x, [Target("class", train_y, test_y, n_classes)], cfg, log)


def data_targets(data) -> list[Target]:
    """The targets a data set provides (``ImageData.targets()``: the class as content target, and
    what else it labels)."""
    return list(data.targets())


QUICK_EVAL = {"max_train_images": 10000, "val_size": 2000, "probe_max_epochs": 50, "probe_patience": 5, "gmm_restarts": 1,
              "decoder_max_epochs": 10, "decoder_patience": 3, "map_points": 1000,
              "style_max_train_images": 5000, "gen_samples": 2000}
"""The quick-evaluation preset (``--quick-eval``): for short runs, minutes instead of a quarter hour."""


def eval_config_for(run, overrides: dict | None = None, quick: bool = False) -> EvalConfig:
    """The evaluation settings of a loaded run: its config's, the quick preset, then ``overrides``."""
    values = {**run.config.eval.model_dump(), **(QUICK_EVAL if quick else {}), **(overrides or {})}
    return parse_config(EvalConfig, values, where="evaluation options")


def evaluate_loaded(run, cfg: EvalConfig, log=None) -> dict:
    """Metrics of a loaded run (``simvae.run.Run``): k-NN, probes, GMM on its posterior means /
    encoder outputs, the reconstruction MSE where it has a decoder, and the state of the model
    (``model_epoch``, ``model_step``, ``finished``). Raises SimvaeError on non-finite representations."""
    log = log or (lambda msg: None)
    torch.manual_seed(cfg.seed)
    t0 = time.monotonic()
    data = run.data
    n_train = len(data.train_images) if cfg.max_train_images is None else min(cfg.max_train_images, len(data.train_images))
    train_images = data.train_images[:n_train]
    train_x, test_x = run.encode(train_images), run.encode(data.test_images)
    if not (torch.isfinite(train_x).all() and torch.isfinite(test_x).all()):
        from ..errors import SimvaeError

        raise SimvaeError(f"{run.path}: the representations contain NaN or inf; the run has diverged")
    log(f"encoded {len(train_x)} training and {len(test_x)} test images ({time.monotonic() - t0:.1f}s)")
    targets = [t.head(n_train) for t in data_targets(data)]
    metrics = {"method": run.config.train.method, "dataset": run.config.train.dataset, **run.state}
    metrics.update(evaluate_targets(train_x, test_x, targets, cfg, log, skip=tuple(cfg.skip)))
    rep = Representations(train_x, test_x, targets)
    for name, fn in RUN_EVALUATORS.items():
        if name not in cfg.skip:
            metrics.update(fn(run, rep, cfg, log))
    recon = run.reconstruct(data.test_images)
    if recon is not None:
        metrics["recon_mse"] = float((recon - data.test_images.float() / 255).pow(2).mean())
        decoder = getattr(run.method, "posthoc_decoder", None)
        if decoder is not None:
            metrics["posthoc_decoder_val_mse"] = float(getattr(decoder, "val_mse", float("nan")))
            metrics["posthoc_decoder_epochs"] = int(getattr(decoder, "epochs", 0))
            metrics["posthoc_decoder_capped"] = bool(getattr(decoder, "epochs", 0) and
                                                     getattr(decoder, "epochs", 0) == getattr(decoder, "max_epochs", -1))
    metrics["eval_seconds"] = round(time.monotonic() - t0, 2)
    metrics["eval_config"] = cfg.model_dump()
    return metrics


def write_metrics(path: str | Path, metrics: dict) -> Path:
    """``RUN_DIR/metrics.json``, written atomically."""
    out = Path(path) / "metrics.json"
    tmp = out.with_name("metrics.json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(out)
    return out


def evaluate_run(path: str | Path, overrides: dict | None = None, quiet: bool = False, run=None,
                 quick: bool = False, cfg: EvalConfig | None = None) -> dict:
    """Evaluate a run folder: returns the metrics and writes ``metrics.json``, nothing else.

    (The report, figures and post-hoc decoders are the pipeline's: ``simvae.pipeline``.)"""
    from ..run import load_run

    path = Path(path)
    if run is None:
        run = load_run(path, device=(overrides or {}).get("device", "auto"))
    cfg = cfg or eval_config_for(run, overrides, quick)

    def log(msg: str) -> None:
        if not quiet:
            print(f"[evaluate] {msg}", file=sys.stderr, flush=True)

    metrics = evaluate_loaded(run, cfg, log)
    write_metrics(path, metrics)
    return metrics
