"""Evaluation speed, before and after: the probes (content and style targets) and the Gaussian
mixture of ``simvae evaluate``, run by the previous implementation (kept below, verbatim) and by
the current one on the same representations of one trained run, interleaved (old, new, new, old,
...) so that a busy machine slows both alike.

The run's training and test images are encoded once (and their style views, as the style
evaluator makes them: one augmented view of the first 10,000 training images and of each test
image), cached in a .pt file (``--cache``; made again when the checkpoint changes). Each
evaluation seed (``--seeds``, default 0 1 2) is one pair of runs; the seed moves the validation
split, the probes' initialisation and shuffles and the mixture's k-means starts, so the spread of
the previous implementation's figures over the seeds is the protocol's seed-to-seed noise. Prints
one table:
evaluator, seconds before and after (min and median over the seeds), then every figure before,
after, their largest difference over the seeds and the noise (max - min of the previous figures).

    python benchmarks/eval_speed.py [--run /tmp/demo-base] [--cache /tmp/eval_speed_reps.pt] [--seeds 0 1 2]
        [--only probes,style,gmm] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from torch import nn

import simvae.evaluate.gmm as gmm_module
import simvae.evaluate.probes as probes_module
from simvae.data.targets import Target
from simvae.evaluate.gmm import match_clusters
from simvae.evaluate.probes import intra_op_threads, make_probe
from simvae.evaluate.protocol import Context
from simvae.run_config import EvalConfig

# ---------------------------------------------------------------------------------------------
# The previous implementation, verbatim but for names: one HeadBank (an nn.Module trained by
# torch.optim.Adam through autograd) per probe kind and learning rate, and scikit-learn's
# GaussianMixture.
# ---------------------------------------------------------------------------------------------


class LegacyHeadBank(nn.Module):
    """Probes of one kind (linear or MLP) stacked into one module: weights [T, in, out], so a
    step costs a few batched matrix products however many targets there are. Head t predicts
    ``classes[t]`` classes; its logits beyond them are masked to -inf (their weights get no
    gradient). ``forward(x [n, d]) -> logits [T, n, max classes]``."""

    def __init__(self, probes: list[nn.Module], classes: list[int]):
        super().__init__()
        self.mlp = isinstance(probes[0], nn.Sequential)
        c_max = max(classes)
        linears = [(p[0], p[2]) if self.mlp else (p,) for p in probes]
        self.w = nn.ParameterList()
        self.b = nn.ParameterList()
        for layer in range(len(linears[0])):
            out = linears[0][layer].out_features if layer < len(linears[0]) - 1 else c_max
            w = torch.zeros(len(probes), linears[0][layer].in_features, out)
            b = torch.zeros(len(probes), out)
            for t, ls in enumerate(linears):  # each head starts as its own nn.Linear would
                w[t, :, : ls[layer].out_features] = ls[layer].weight.detach().T
                b[t, : ls[layer].out_features] = ls[layer].bias.detach()
            self.w.append(nn.Parameter(w))
            self.b.append(nn.Parameter(b))
        mask = torch.zeros(len(probes), 1, c_max)
        for t, c in enumerate(classes):
            mask[t, :, c:] = float("-inf")
        self.register_buffer("mask", mask if min(classes) < c_max else None)  # None: every head has all columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.baddbmm(self.b[0][:, None], x.expand(self.w[0].shape[0], -1, -1), self.w[0])
        if self.mlp:
            h = torch.baddbmm(self.b[1][:, None], torch.relu(h), self.w[1])
        return h if self.mask is None else h + self.mask

    def head_state(self, t: int) -> list[torch.Tensor]:
        return [p[t].detach().clone() for p in (*self.w, *self.b)]

    @torch.no_grad()
    def load_head(self, t: int, state: list[torch.Tensor]) -> None:
        for p, v in zip((*self.w, *self.b), state):
            p[t] = v


def _legacy_nll(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per head: summed negative log-likelihood, correct predictions and labelled rows, for
    logits [T, n, C] and labels y [T, n] (-1: no label, left out)."""
    valid = y >= 0
    correct = ((logits.argmax(-1) == y) & valid).sum(1)
    return _legacy_row_nll(logits, y).sum(1), correct, valid.sum(1)


def _legacy_row_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row [T, n] (0 where y is -1), for logits [T, n, C]."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="none").view_as(y)


@torch.no_grad()
def _legacy_loss_acc(bank: LegacyHeadBank, x: torch.Tensor, y: torch.Tensor, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy of each head of ``bank`` on x [n, d], labels y [T, n]: two [T] tensors."""
    loss = torch.zeros(y.shape[0], dtype=torch.float64)
    correct = torch.zeros(y.shape[0], dtype=torch.long)
    count = torch.zeros(y.shape[0], dtype=torch.long)
    for s in range(0, x.shape[0], block):
        nll, c, n = _legacy_nll(bank(x[s : s + block]), y[:, s : s + block])
        loss += nll.double().cpu()
        correct += c.cpu()
        count += n.cpu()
    none = count == 0  # a head with no labelled rows here: NaN, not a perfect 0 loss
    return torch.where(none, torch.nan, loss / count.clamp(min=1)), torch.where(none, torch.nan, correct.double() / count.clamp(min=1))


def _labels(y: torch.Tensor | None) -> torch.Tensor | None:
    return None if y is None else (y[:, None] if y.ndim == 1 else y)


def legacy_train_probes(
    kinds: dict[str, str | tuple],
    fit_x: torch.Tensor,
    fit_y: torch.Tensor,
    val_x: torch.Tensor | None,
    val_y: torch.Tensor | None,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int | list[int],
    lr: float = 3e-4,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 10,
    hidden: int | None = None,
    seed: int = 0,
    progress=None,
    threads: int = 1,
) -> dict[str, dict]:
    """Train the probes ``{name: kind}``, ``{name: (kind, lr)}`` or ``{name: (kind, lr, t)}`` together;
    return ``{name: {acc, val_acc, val_loss, epochs, epochs_run, capped}}``.

    Labels are ``fit_y`` [n] (one target) or [n, T] (T targets; head ``t`` predicts column t,
    ``n_classes[t]`` classes, and rows labelled -1 are left out of its loss and scores), int64.
    fit_x [n, d] float. With ``val_x`` None the fixed-epoch protocol is used (the last epoch is
    scored). ``capped`` is True when a head ran out of epochs before its patience ran out (it may
    still have been improving). ``progress(epoch, max_epochs)`` is called after each epoch.

    Heads of one kind and learning rate share a ``HeadBank`` (one Adam parameter group): its
    heads' parameters are disjoint slices and Adam is elementwise, so each head follows the
    trajectory it would follow alone on the same batches, at the cost of a few batched products
    per step. (A target labelled on part of the images, like hair colour, sees batches of its
    labelled rows only: smaller than ``batch_size`` on average, and more steps per labelled image
    than a probe trained on those rows alone.) ``epochs_run`` is the shared loop's epoch count.
    """
    fit_y, val_y, test_y = _labels(fit_y), _labels(val_y), _labels(test_y)
    classes = [n_classes] * fit_y.shape[1] if isinstance(n_classes, int) else list(n_classes)
    g = torch.Generator().manual_seed(seed)
    banks: dict[tuple, list[tuple[str, int, nn.Module]]] = {}
    for name, spec in kinds.items():  # each head's initialisation depends on its name only, not on its company
        spec = (spec,) if isinstance(spec, str) else tuple(spec)
        kind, head_lr, t = spec[0], spec[1] if len(spec) > 1 else lr, spec[2] if len(spec) > 2 else 0
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            torch.manual_seed(seed + zlib.crc32(name.encode()))
            probe = make_probe(kind, fit_x.shape[1], classes[t], hidden)
        banks.setdefault((kind, head_lr), []).append((name, t, probe))
    modules, columns, groups = [], [], []
    for (_kind, head_lr), members in banks.items():
        bank = LegacyHeadBank([m for _, _, m in members], [classes[t] for _, t, _ in members]).to(fit_x.device)
        modules.append((bank, [name for name, _, _ in members]))
        columns.append(torch.tensor([t for _, t, _ in members], device=fit_x.device))
        groups.append({"params": list(bank.parameters()), "lr": head_lr})
    opt = torch.optim.Adam(groups, lr=lr)
    state = {
        name: {"best_loss": float("inf"), "epoch": 0, "weights": None, "val_acc": None, "done": False, "fixed": val_x is None}
        for name in kinds
    }
    if val_x is not None:  # a head without one labelled validation row cannot be stopped on it: fixed epochs
        for (_bank, names), cols in zip(modules, columns):
            for name, labelled in zip(names, (val_y[:, cols] >= 0).sum(0).tolist()):
                state[name]["fixed"] = labelled == 0
    n = fit_x.shape[0]
    epoch = 0
    with intra_op_threads(threads):
        for epoch in range(1, max_epochs + 1):
            perm = torch.randperm(n, generator=g).to(fit_x.device)
            xs = fit_x[perm]  # one gather per epoch, then contiguous slices
            ys = [fit_y[perm][:, cols].T.contiguous() for cols in columns]  # per bank: [T, n]
            full = [bool((y >= 0).all()) for y in ys]
            for s in range(0, n, batch_size):
                xb = xs[s : s + batch_size]
                loss = 0.0
                for (bank, _), y, all_labelled in zip(modules, ys, full):
                    logits, y_t = bank(xb), y[:, s : s + batch_size]  # [T, b, C], [T, b]
                    count = y_t.shape[1] if all_labelled else (y_t >= 0).sum(1).clamp(min=1)
                    loss = loss + (_legacy_row_nll(logits, y_t).sum(1) / count).sum()  # each head: the mean over its labelled rows
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if progress is not None:
                progress(epoch, max_epochs)
            if val_x is None:
                continue
            for (bank, names), cols in zip(modules, columns):
                val_loss, val_acc = _legacy_loss_acc(bank, val_x, val_y[:, cols].T)
                for t, name in enumerate(names):
                    st = state[name]
                    if st["done"] or st["fixed"]:
                        continue  # trained on with its bank (free), but its best epoch is kept
                    if float(val_loss[t]) < st["best_loss"]:
                        st.update(best_loss=float(val_loss[t]), epoch=epoch, weights=bank.head_state(t), val_acc=float(val_acc[t]))
                    elif epoch - st["epoch"] >= patience:
                        st["done"] = True
            if all(st["done"] for st in state.values()):  # (a fixed-epoch head is never done)
                break
        out = {}
        for (bank, names), cols in zip(modules, columns):
            for t, name in enumerate(names):
                if not state[name]["fixed"] and state[name]["weights"] is not None:
                    bank.load_head(t, state[name]["weights"])  # (no finite validation loss ever: the last epoch)
            _, test_acc = _legacy_loss_acc(bank, test_x, test_y[:, cols].T)
            for t, name in enumerate(names):
                st = state[name]
                stopped = not st["fixed"] and st["weights"] is not None
                out[name] = {
                    "acc": float(test_acc[t]),
                    "val_acc": st["val_acc"],
                    "val_loss": st["best_loss"] if stopped else float("nan"),
                    "epochs": st["epoch"] if stopped else epoch,
                    "epochs_run": epoch,
                    "capped": stopped and not st["done"] and epoch == max_epochs,
                }
    return {name: out[name] for name in kinds}


def legacy_gmm_evaluate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    restarts: int = 10,
    max_iter: int = 200,
    seed: int = 0,
) -> dict:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    train_z, test_z = (train_x - mean) / std, (test_x - mean) / std
    gmm = GaussianMixture(
        n_components=n_classes, covariance_type="full", n_init=restarts, max_iter=max_iter, reg_covar=1e-5, random_state=seed
    )
    gmm.fit(train_z)
    test_clusters = gmm.predict(test_z)
    # the standard unsupervised clustering accuracy: clusters matched to classes on the scored split
    mapping = match_clusters(test_clusters, test_y, n_classes)
    train_mapping = match_clusters(gmm.predict(train_z), train_y, n_classes)
    return {
        "gmm_acc": float((mapping[test_clusters] == test_y).mean()),
        "gmm_acc_train_matched": float((train_mapping[test_clusters] == test_y).mean()),
        "gmm_nmi": float(normalized_mutual_info_score(test_y, test_clusters)),
        "gmm_ari": float(adjusted_rand_score(test_y, test_clusters)),
        "gmm_converged": bool(gmm.converged_),
    }


# ---------------------------------------------------------------------------------------------


def encode(run_path: Path, cache: Path, style_images: int = 10000) -> dict:
    """The run's representations (training, test, style views) and targets, from ``cache`` when it
    was made from the same checkpoint."""
    ckpt = run_path / "checkpoint.pt"
    stamp = f"{ckpt.resolve()}:{ckpt.stat().st_mtime_ns}"
    if cache.is_file():
        data = torch.load(cache, weights_only=False)
        if data.get("stamp") == stamp:
            return data
    import simvae
    from simvae.evaluate.style import augmented_representations, style_targets

    t = time.monotonic()
    run = simvae.load_run(run_path, device="cpu")
    d = run.data
    n = min(style_images, len(d.train_images))
    style_x, style_v = augmented_representations(run.method.encode, d.train_images[:n], run.augment_spec, d.binarized, 1)
    style_tx, style_tv = augmented_representations(run.method.encode, d.test_images, run.augment_spec, d.binarized, 2)
    data = {
        "stamp": stamp,
        "state": run.state,
        "train_x": run.encode(d.train_images),
        "test_x": run.encode(d.test_images),
        "targets": [vars(t) for t in d.targets()],
        "style_train_x": style_x,
        "style_test_x": style_tx,
        "style_targets": [vars(t) for t in style_targets(style_v, style_tv, 4)],
    }
    torch.save(data, cache)
    print(f"encoded {run_path} in {time.monotonic() - t:.1f}s -> {cache}", file=sys.stderr)
    return data


@contextmanager
def legacy(on: bool):
    """Route the evaluators to the previous implementation while ``on``."""
    saved = probes_module.train_probes, gmm_module.gmm_evaluate
    if on:
        probes_module.train_probes, gmm_module.gmm_evaluate = legacy_train_probes, legacy_gmm_evaluate
    try:
        yield
    finally:
        probes_module.train_probes, gmm_module.gmm_evaluate = saved


def evaluate(data: dict, which: str, seed: int, old: bool) -> tuple[float, dict]:
    """Seconds and figures of one evaluator (``probes``: content probes; ``style``: the style
    targets' probes; ``gmm``) on the cached representations."""
    cfg = EvalConfig(seed=seed)
    if which == "style":
        ctx = Context(data["style_train_x"], data["style_test_x"], cfg)
        targets = [Target(**t) for t in data["style_targets"]]
    else:
        ctx = Context(data["train_x"], data["test_x"], cfg)
        targets = [Target(**t) for t in data["targets"]][:1]  # the content target (the class)
    with legacy(old):
        t = time.perf_counter()
        if which == "gmm":
            out = gmm_module.gmm_evaluator(ctx, targets[0], lambda msg: None)
        else:
            out = probes_module.probe_evaluator(ctx, targets, lambda msg: None)
        seconds = time.perf_counter() - t
    return seconds, {k: v for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path("/tmp/demo-base"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/eval_speed_reps.pt"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", default="probes,style,gmm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write every run's seconds and figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = encode(args.run, args.cache)
    if not data["state"].get("finished", True):
        print(f"note: {args.run} has not finished training ({data['state']})", file=sys.stderr)
    results = {}  # (evaluator, old?) -> list of (seconds, figures), one per seed
    for i, seed in enumerate(args.seeds):
        for which in args.only.split(","):
            for old in (True, False) if i % 2 == 0 else (False, True):  # interleaved
                seconds, figures = evaluate(data, which, seed, old)
                results.setdefault((which, old), []).append((seconds, figures))
                print(
                    f"seed {seed} {which:6s} {'before' if old else 'after ':6s} {seconds:8.1f}s {json.dumps(figures)}",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for which in args.only.split(","):
        before, after = results[(which, True)], results[(which, False)]
        tb, ta = [s for s, _ in before], [s for s, _ in after]
        rows.append(
            f"| {which} | seconds (min / median) | {min(tb):.1f} / {statistics.median(tb):.1f} | "
            f"{min(ta):.1f} / {statistics.median(ta):.1f} | x{statistics.median(tb) / statistics.median(ta):.1f} | |"
        )
        for key in before[0][1]:
            b = [f[key] for _, f in before]
            a = [f.get(key, float("nan")) for _, f in after]
            diff = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
            rows.append(f"| {which} | {key} | {b[0]:.4g} | {a[0]:.4g} | {diff:.3g} | {max(b) - min(b):.3g} |")
    print(f"representations: {args.run} ({data['state']}); seeds {args.seeds}; {args.threads} intra-op thread(s)")
    print("| evaluator | figure (seed %d) | before | after | largest after - before over seeds | noise: max - min before |" % args.seeds[0])
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps({f"{w}/{'before' if o else 'after'}": r for (w, o), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
