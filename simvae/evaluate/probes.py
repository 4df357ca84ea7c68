"""Linear and MLP probes on frozen representations (paper A.7.5: Adam 3e-4, batch 128, up to
200 epochs; the MLP is "two fully connected layers with a relu", whose hidden width in the
paper's public code equals the representation size).

Several probes, of one target or of several (the class, hair colour, attributes, style
labels), are trained in one loop as disjoint heads of one ``HeadBank`` (batched weights in one
flat parameter vector, a learning rate per head): every head sees the same mini-batches (the
rows it has no label for are left out of its loss), and since the loss is a sum of per-head
losses and Adam is elementwise, every head follows the trajectory it would follow alone. A step
costs a few batched products and one Adam update whatever the number of heads, with gradients
written by hand (the per-operation cost of a step, not its arithmetic, is the bottleneck for
10- or 64-d inputs: autograd and torch.optim.Adam made a step several times slower).

Two protocols:
- ``validation`` (the headline): train on the fit split, keep each head's epoch with the
  lowest validation loss (a head stops improving after ``patience`` epochs without a better
  one), then score that epoch once on test.
- ``fixed`` (the paper's): train on the whole training set for ``max_epochs`` and score the
  last epoch once on test.
"""

from __future__ import annotations

import time
import zlib
from contextlib import contextmanager

import torch
from torch import nn

from .progress import every
from .registry import Metric, register_evaluator


def make_probe(kind: str, in_dim: int, n_classes: int, hidden: int | None = None) -> nn.Module:
    """``linear``: one layer; ``mlp``: Linear(in, hidden) - ReLU - Linear(hidden, classes),
    hidden defaulting to ``in_dim``. Raises ValueError for another kind."""
    if kind == "linear":
        return nn.Linear(in_dim, n_classes)
    if kind == "mlp":
        hidden = hidden or in_dim
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    raise ValueError(f"unknown probe kind '{kind}' (linear or mlp)")


@contextmanager
def intra_op_threads(n: int):
    """Tiny matrices gain nothing from several threads and lose a lot to their synchronisation
    on a busy machine: run the probes on ``n`` intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class HeadBank:
    """Probes of both kinds (linear and MLP), of any targets and learning rates, stacked into one
    set of batched weights (linear heads [L, in, C], MLP layers [M, in, hidden] and [M, hidden, C],
    C the most classes of any head) that live in one flat parameter vector, trained by Adam with a
    learning rate per head. A step is a few batched products, gradients written by hand (softmax
    minus one-hot: no autograd graph) and one elementwise Adam update of the flat vector: about 25
    tensor operations however many heads and targets there are, which matters because for 10- or
    64-d inputs the cost of a step is the per-operation overhead, not the arithmetic.

    Head t predicts ``classes[t]`` classes; its logits beyond them are masked to -inf (their
    weights get no gradient). Every operation is per head (batched products, per-row softmax,
    elementwise Adam), so each head follows the trajectory it would follow alone on the same
    batches. Heads are ordered linear first, then MLP: ``order[i]`` is the index in ``probes`` of
    the bank's head i. ``logits(x [n, in]) -> [T, n, C]`` in the bank's order."""

    BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults

    def __init__(self, probes: list[nn.Module], classes: list[int], lrs: list[float], device=None):
        mlp = [isinstance(p, nn.Sequential) for p in probes]
        self.order = [i for i, m in enumerate(mlp) if not m] + [i for i, m in enumerate(mlp) if m]
        probes, classes, lrs = [probes[i] for i in self.order], [classes[i] for i in self.order], [lrs[i] for i in self.order]
        self.n_linear, self.n_mlp = mlp.count(False), mlp.count(True)
        L, M, c = self.n_linear, self.n_mlp, max(classes)
        d = probes[0].in_features if L else probes[0][0].in_features
        hidden = probes[-1][0].out_features if M else 0
        shapes = {"wl": (L, d, c), "bl": (L, c), "w1": (M, d, hidden), "b1": (M, hidden), "w2": (M, hidden, c), "b2": (M, c)}
        sizes = [torch.Size(s).numel() for s in shapes.values()]
        self.flat = torch.zeros(sum(sizes))
        owner = torch.zeros(sum(sizes), dtype=torch.long)  # the head (bank order) of each parameter
        views = dict(zip(shapes, (v.view(s) for v, s in zip(self.flat.split(sizes), shapes.values()))))
        owners = dict(zip(shapes, (v.view(s) for v, s in zip(owner.split(sizes), shapes.values()))))
        for t, p in enumerate(probes):  # each head starts as its own nn.Linear layers would
            layers = {"wl": p, "bl": p} if t < L else {"w1": p[0], "b1": p[0], "w2": p[2], "b2": p[2]}
            i = t if t < L else t - L
            for key, layer in layers.items():
                v = layer.weight.detach().T if key.startswith("w") else layer.bias.detach()
                views[key][i][..., : v.shape[-1]] = v
                owners[key][i] = t
        self.flat, self.owner = self.flat.to(device), owner.to(device)
        self.grad, self.m, self.v = (torch.zeros_like(self.flat) for _ in range(3))
        self.neg_lr = -torch.tensor(lrs, dtype=self.flat.dtype, device=device)[self.owner]
        self.steps = 0
        self._minus_one = torch.empty(len(probes), 0, 1)
        for name, buf in (("", self.flat), ("g_", self.grad)):
            for key, v, s in zip(shapes, buf.split(sizes), shapes.values()):
                setattr(self, name + key, v.view(s))
        mask = torch.zeros(len(probes), 1, c, device=device)
        for t, k in enumerate(classes):
            mask[t, :, k:] = float("-inf")
        self.mask = mask if min(classes) < c else None  # None: every head has all columns

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [T, n, C] of x [n, in] (bank order; -inf beyond a head's classes)."""
        return self._forward(x)[0]

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts, a = [], None
        if self.n_linear:
            parts.append(torch.baddbmm(self.bl[:, None], x.expand(self.n_linear, -1, -1), self.wl))
        if self.n_mlp:
            a = torch.relu(torch.baddbmm(self.b1[:, None], x.expand(self.n_mlp, -1, -1), self.w1))
            parts.append(torch.baddbmm(self.b2[:, None], a, self.w2))
        z = parts[0] if len(parts) == 1 else torch.cat(parts)
        return (z if self.mask is None else z + self.mask), a

    def step(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | float) -> None:
        """One Adam step on the summed cross-entropy of the heads' batch: x [b, in], labels y
        [T, b] (bank order, no -1), ``weight`` of each row in its head's loss: a float (1 / b)
        or [T, b, 1] (0 for unlabelled rows, else 1 / the head's labelled rows)."""
        z, a = self._forward(x)
        # d loss / d logits = (softmax - one-hot) * weight; softmax by hand: torch.softmax over a last
        # dimension of 10 costs several times these four operations on a CPU
        g = (z - z.amax(-1, keepdim=True)).exp_()
        g.div_(g.sum(-1, keepdim=True))
        if self._minus_one.shape[1] < y.shape[1]:
            self._minus_one = torch.full((*y.shape, 1), -1.0, device=g.device)
        g.scatter_add_(2, y[..., None], self._minus_one[:, : y.shape[1]])
        g.mul_(weight)
        L = self.n_linear
        if L:
            gl = g[:L]
            torch.bmm(x.T.expand(L, -1, -1), gl, out=self.g_wl)
            torch.sum(gl, 1, out=self.g_bl)
        if self.n_mlp:
            gm = g[L:]
            torch.bmm(a.transpose(1, 2), gm, out=self.g_w2)
            torch.sum(gm, 1, out=self.g_b2)
            ga = torch.ops.aten.threshold_backward(torch.bmm(gm, self.w2.transpose(1, 2)), a, 0)
            torch.bmm(x.T.expand(self.n_mlp, -1, -1), ga, out=self.g_w1)
            torch.sum(ga, 1, out=self.g_b1)
        self.steps += 1  # Adam, as torch.optim.Adam computes it, with a learning rate per parameter
        b1, b2 = self.BETAS
        self.m.lerp_(self.grad, 1 - b1)
        self.v.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        c2 = (1 - b2**self.steps) ** 0.5  # m / bc1 / (sqrt(v) / c2 + eps) = (c2 / bc1) m / (sqrt(v) + eps c2)
        denom = self.v.sqrt().add_(self.EPS * c2)
        self.flat.addcdiv_(self.m * self.neg_lr, denom, value=c2 / (1 - b1**self.steps))


def _nll(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per head: summed negative log-likelihood, correct predictions and labelled rows, for
    logits [T, n, C] and labels y [T, n] (-1: no label, left out)."""
    valid = y >= 0
    correct = ((logits.argmax(-1) == y) & valid).sum(1)
    return _row_nll(logits, y).sum(1), correct, valid.sum(1)


def _row_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row [T, n] (0 where y is -1), for logits [T, n, C] (log-sum-exp by
    hand: torch's log-softmax over a last dimension of 10 is several times slower on a CPU)."""
    top = logits.amax(-1, keepdim=True)
    lse = (logits - top).exp_().sum(-1).log_().add_(top.squeeze(-1))
    nll = lse - logits.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
    return torch.where(y >= 0, nll, 0.0)


@torch.no_grad()
def _loss_acc(bank: HeadBank, x: torch.Tensor, y: torch.Tensor, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy of each head of ``bank`` on x [n, d], labels y [T, n]: two [T] tensors."""
    loss = torch.zeros(y.shape[0], dtype=torch.float64)
    correct = torch.zeros(y.shape[0], dtype=torch.long)
    count = torch.zeros(y.shape[0], dtype=torch.long)
    for s in range(0, x.shape[0], block):
        nll, c, n = _nll(bank.logits(x[s : s + block]), y[:, s : s + block])
        loss += nll.double().cpu()
        correct += c.cpu()
        count += n.cpu()
    none = count == 0  # a head with no labelled rows here: NaN, not a perfect 0 loss
    return torch.where(none, torch.nan, loss / count.clamp(min=1)), torch.where(none, torch.nan, correct.double() / count.clamp(min=1))


def _labels(y: torch.Tensor | None) -> torch.Tensor | None:
    return None if y is None else (y[:, None] if y.ndim == 1 else y)


def train_probes(
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

    All heads share one ``HeadBank``: their parameters are disjoint slices of one vector and Adam
    is elementwise, so each head follows the trajectory it would follow alone on the same batches,
    at the cost of a few batched products per step. (A target labelled on part of the images, like
    hair colour, sees batches of its labelled rows only: smaller than ``batch_size`` on average,
    and more steps per labelled image than a probe trained on those rows alone.) ``epochs_run`` is
    the shared loop's epoch count.
    """
    fit_y, val_y, test_y = _labels(fit_y), _labels(val_y), _labels(test_y)
    classes = [n_classes] * fit_y.shape[1] if isinstance(n_classes, int) else list(n_classes)
    g = torch.Generator().manual_seed(seed)
    probes, heads, lrs = [], [], []
    for name, spec in kinds.items():  # each head's initialisation depends on its name only, not on its company
        spec = (spec,) if isinstance(spec, str) else tuple(spec)
        kind, head_lr, t = spec[0], spec[1] if len(spec) > 1 else lr, spec[2] if len(spec) > 2 else 0
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            torch.manual_seed(seed + zlib.crc32(name.encode()))
            probes.append(make_probe(kind, fit_x.shape[1], classes[t], hidden))
        heads.append((name, t))
        lrs.append(head_lr)
    bank = HeadBank(probes, [classes[t] for _, t in heads], lrs, fit_x.device)
    names = [heads[i][0] for i in bank.order]  # the bank's order
    cols = torch.tensor([heads[i][1] for i in bank.order], device=fit_x.device)
    state = {
        name: {"best_loss": float("inf"), "epoch": 0, "saved": False, "val_acc": None, "done": False, "fixed": val_x is None}
        for name in names
    }
    if val_x is not None:  # a head without one labelled validation row cannot be stopped on it: fixed epochs
        for name, labelled in zip(names, (val_y[:, cols] >= 0).sum(0).tolist()):
            state[name]["fixed"] = labelled == 0
        val_t = val_y[:, cols].T.contiguous()
    best = bank.flat.clone()  # each head's weights at its best validation epoch so far
    n = fit_x.shape[0]
    all_labelled = bool((fit_y[:, cols] >= 0).all())
    epoch = 0
    with intra_op_threads(threads):
        for epoch in range(1, max_epochs + 1):
            perm = torch.randperm(n, generator=g).to(fit_x.device)
            xs = fit_x[perm]  # one gather per epoch, then contiguous slices
            ys = fit_y[perm][:, cols].T.contiguous()  # [T, n]
            if not all_labelled:
                labelled = (ys >= 0).to(fit_x.dtype)
                ys = ys.clamp(min=0)
            for s in range(0, n, batch_size):
                y_b = ys[:, s : s + batch_size]
                if all_labelled:
                    weight = 1.0 / y_b.shape[1]
                else:  # each head: the mean over its labelled rows
                    w = labelled[:, s : s + batch_size]
                    weight = (w / w.sum(1, keepdim=True).clamp(min=1))[..., None]
                bank.step(xs[s : s + batch_size], y_b, weight)
            if progress is not None:
                progress(epoch, max_epochs)
            if val_x is None:
                continue
            val_loss, val_acc = _loss_acc(bank, val_x, val_t)
            improved = torch.zeros(len(names), dtype=torch.bool)
            for t, name in enumerate(names):
                st = state[name]
                if st["done"] or st["fixed"]:
                    continue  # trained on with the bank (free), but its best epoch is kept
                if float(val_loss[t]) < st["best_loss"]:
                    st.update(best_loss=float(val_loss[t]), epoch=epoch, saved=True, val_acc=float(val_acc[t]))
                    improved[t] = True
                elif epoch - st["epoch"] >= patience:
                    st["done"] = True
            if improved.any():
                best = torch.where(improved.to(bank.owner.device)[bank.owner], bank.flat, best)
            if all(st["done"] for st in state.values()):  # (a fixed-epoch head is never done)
                break
        # heads stopped on validation get their best epoch back (no finite validation loss ever: the last epoch)
        restore = torch.tensor([not state[name]["fixed"] and state[name]["saved"] for name in names])
        bank.flat.copy_(torch.where(restore.to(bank.owner.device)[bank.owner], best, bank.flat))
        _, test_acc = _loss_acc(bank, test_x, test_y[:, cols].T)
        out = {}
        for t, name in enumerate(names):
            st = state[name]
            stopped = not st["fixed"] and st["saved"]
            out[name] = {
                "acc": float(test_acc[t]),
                "val_acc": st["val_acc"],
                "val_loss": st["best_loss"] if stopped else float("nan"),
                "epochs": st["epoch"] if stopped else epoch,
                "epochs_run": epoch,
                "capped": stopped and not st["done"] and epoch == max_epochs,
            }
    return {name: out[name] for name in kinds}


def train_probe(
    kind: str,
    fit_x,
    fit_y,
    val_x,
    val_y,
    test_x,
    test_y,
    n_classes: int,
    lr=3e-4,
    batch_size=128,
    max_epochs=200,
    patience=10,
    hidden=None,
    seed=0,
    progress=None,
) -> dict:
    """One probe (validation-stopped): ``{kind}_acc``, ``{kind}_val_acc``, ``{kind}_epochs``, ``{kind}_epochs_run``."""
    r = train_probes(
        {kind: kind},
        fit_x,
        fit_y,
        val_x,
        val_y,
        test_x,
        test_y,
        n_classes,
        lr=lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        hidden=hidden,
        seed=seed,
    )[kind]
    return {f"{kind}_acc": r["acc"], f"{kind}_val_acc": r["val_acc"], f"{kind}_epochs": r["epochs"], f"{kind}_epochs_run": r["epochs_run"]}


def _or_inf(x: float) -> float:
    return float("inf") if x != x else x


@register_evaluator(
    "probes",
    "joint",
    metrics=(
        Metric("linear_acc", "linear", headline=True, note="linear probe, stopped on validation loss"),
        Metric("mlp_acc", "MLP", headline=True, note="MLP probe (hidden width = representation size), stopped on validation"),
        Metric("linear_lr", "linear probe learning rate (chosen on validation)", "number", None),
        Metric("linear_acc_paper_protocol", "linear, fixed epochs on all training images (paper protocol)"),
        Metric("mlp_acc_paper_protocol", "MLP, fixed epochs on all training images (paper protocol)"),
    ),
)
def probe_evaluator(ctx, targets, log) -> dict:
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
    opts = dict(
        lr=cfg.probe_lr,
        batch_size=cfg.probe_batch_size,
        max_epochs=cfg.probe_max_epochs,
        patience=cfg.probe_patience,
        hidden=hidden,
        seed=cfg.seed,
    )
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
    log(
        f"{targets[0].prefix() if len(targets) == 1 else ''}training the linear and MLP probes{what} "
        f"(up to {cfg.probe_max_epochs} epochs, stopped on validation)"
    )
    trained = train_probes(
        heads,
        ctx.z_train[fit],
        y[fit],
        ctx.z_train[val],
        y[val],
        ctx.z_test[test],
        ty[test],
        classes,
        progress=every(30.0, lambda e, n, el: log(f"  probes: epoch {e} of at most {n}, {el:.0f}s (at most {el / e * (n - e):.0f}s more)")),
        **opts,
    )
    out: dict = {}
    for target in targets:
        p = target.prefix()
        best = min(range(len(lrs)), key=lambda j: _or_inf(trained[f"{p}linear_lr{j}"]["val_loss"]))
        probes = {"linear": trained[f"{p}linear_lr{best}"], "mlp": trained[f"{p}mlp"]}
        out[f"{p}probe_hidden"], out[f"{p}linear_lr"] = hidden, lrs[best]
        for kind, r in probes.items():
            out.update(
                {
                    f"{p}{kind}_acc": r["acc"],
                    f"{p}{kind}_val_acc": r["val_acc"],
                    f"{p}{kind}_epochs": r["epochs"],
                    f"{p}{kind}_epochs_run": r["epochs_run"],
                    f"{p}{kind}_capped": r["capped"],
                }
            )
        capped = [k for k, r in probes.items() if r["capped"]]
        log(
            f"{p}probes: linear {probes['linear']['acc']:.4f} (lr {lrs[best]:g} chosen on validation, epoch "
            f"{probes['linear']['epochs']}), MLP {probes['mlp']['acc']:.4f} (epoch {probes['mlp']['epochs']})"
            + (f"; {' and '.join(capped)} stopped at the epoch cap, it may still have been improving" if capped else "")
        )
    log(f"probes trained in {time.monotonic() - t:.1f}s")
    if cfg.paper_probes:  # the paper's protocol: fixed epochs on the whole training set, scored once on test
        t = time.monotonic()
        labelled = torch.nonzero((y >= 0).any(1)).squeeze(1)
        kinds = {f"{target.prefix()}{kind}": (kind, cfg.probe_lr, i) for i, target in enumerate(targets) for kind in ("linear", "mlp")}
        fixed = train_probes(kinds, ctx.z_train[labelled], y[labelled], None, None, ctx.z_test[test], ty[test], classes, **opts)
        for name, r in fixed.items():
            out[f"{name}_acc_paper_protocol"] = r["acc"]
        log(
            f"probes, paper protocol ({cfg.probe_max_epochs} epochs on all training images): "
            + ", ".join(f"{name} {r['acc']:.4f}" for name, r in fixed.items())
            + f" ({time.monotonic() - t:.1f}s)"
        )
    return out
