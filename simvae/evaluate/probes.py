"""Linear and MLP probes on frozen representations (paper A.7.5: Adam 3e-4, batch 128, up to
200 epochs; the MLP is "two fully connected layers with a relu", whose hidden width in the
paper's public code equals the representation size).

Several probes, of one target or of several (the class, hair colour, attributes, style
labels), are trained in one loop as disjoint heads: heads of one kind and learning rate are
stacked in one ``HeadBank`` (weights [T, in, out]), every head sees the same mini-batches
(the rows it has no label for are left out of its loss), and since the loss is a sum of
per-head losses and Adam is elementwise, every head follows the trajectory it would follow
alone. A step costs a few batched products whatever the number of targets (the Python cost
of a step is the bottleneck for 10- or 64-d inputs).

Two protocols:
- ``validation`` (the headline): train on the fit split, keep each head's epoch with the
  lowest validation loss (a head stops improving after ``patience`` epochs without a better
  one), then score that epoch once on test.
- ``fixed`` (the paper's): train on the whole training set for ``max_epochs`` and score the
  last epoch once on test.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager

import torch
from torch import nn
import torch.nn.functional as F


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


class HeadBank(nn.Module):
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
                w[t, :, :ls[layer].out_features] = ls[layer].weight.detach().T
                b[t, :ls[layer].out_features] = ls[layer].bias.detach()
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


def _nll(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per head: summed negative log-likelihood, correct predictions and labelled rows, for
    logits [T, n, C] and labels y [T, n] (-1: no label, left out)."""
    valid = y >= 0
    correct = ((logits.argmax(-1) == y) & valid).sum(1)
    return _row_nll(logits, y).sum(1), correct, valid.sum(1)


def _row_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row [T, n] (0 where y is -1), for logits [T, n, C]."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="none").view_as(y)


@torch.no_grad()
def _loss_acc(bank: HeadBank, x: torch.Tensor, y: torch.Tensor, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy of each head of ``bank`` on x [n, d], labels y [T, n]: two [T] tensors."""
    loss = torch.zeros(y.shape[0], dtype=torch.float64)
    correct = torch.zeros(y.shape[0], dtype=torch.long)
    count = torch.zeros(y.shape[0], dtype=torch.long)
    for s in range(0, x.shape[0], block):
        nll, c, n = _nll(bank(x[s:s + block]), y[:, s:s + block])
        loss += nll.double().cpu()
        correct += c.cpu()
        count += n.cpu()
    none = count == 0  # a head with no labelled rows here: NaN, not a perfect 0 loss
    return torch.where(none, torch.nan, loss / count.clamp(min=1)), torch.where(none, torch.nan, correct.double() / count.clamp(min=1))


def _labels(y: torch.Tensor | None) -> torch.Tensor | None:
    return None if y is None else (y[:, None] if y.ndim == 1 else y)


def train_probes(kinds: dict[str, str | tuple], fit_x: torch.Tensor, fit_y: torch.Tensor, val_x: torch.Tensor | None,
                 val_y: torch.Tensor | None, test_x: torch.Tensor, test_y: torch.Tensor, n_classes: int | list[int],
                 lr: float = 3e-4, batch_size: int = 128, max_epochs: int = 200, patience: int = 10,
                 hidden: int | None = None, seed: int = 0, progress=None, threads: int = 1) -> dict[str, dict]:
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
    for (kind, head_lr), members in banks.items():
        bank = HeadBank([m for _, _, m in members], [classes[t] for _, t, _ in members]).to(fit_x.device)
        modules.append((bank, [name for name, _, _ in members]))
        columns.append(torch.tensor([t for _, t, _ in members], device=fit_x.device))
        groups.append({"params": list(bank.parameters()), "lr": head_lr})
    opt = torch.optim.Adam(groups, lr=lr)
    state = {name: {"best_loss": float("inf"), "epoch": 0, "weights": None, "val_acc": None, "done": False,
                    "fixed": val_x is None} for name in kinds}
    if val_x is not None:  # a head without one labelled validation row cannot be stopped on it: fixed epochs
        for (bank, names), cols in zip(modules, columns):
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
                xb = xs[s:s + batch_size]
                loss = 0.0
                for (bank, _), y, all_labelled in zip(modules, ys, full):
                    logits, y_t = bank(xb), y[:, s:s + batch_size]  # [T, b, C], [T, b]
                    count = y_t.shape[1] if all_labelled else (y_t >= 0).sum(1).clamp(min=1)
                    loss = loss + (_row_nll(logits, y_t).sum(1) / count).sum()  # each head: the mean over its labelled rows
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if progress is not None:
                progress(epoch, max_epochs)
            if val_x is None:
                continue
            for (bank, names), cols in zip(modules, columns):
                val_loss, val_acc = _loss_acc(bank, val_x, val_y[:, cols].T)
                for t, name in enumerate(names):
                    st = state[name]
                    if st["done"] or st["fixed"]:
                        continue  # trained on with its bank (free), but its best epoch is kept
                    if float(val_loss[t]) < st["best_loss"]:
                        st.update(best_loss=float(val_loss[t]), epoch=epoch, weights=bank.head_state(t),
                                  val_acc=float(val_acc[t]))
                    elif epoch - st["epoch"] >= patience:
                        st["done"] = True
            if all(st["done"] for st in state.values()):  # (a fixed-epoch head is never done)
                break
        out = {}
        for (bank, names), cols in zip(modules, columns):
            for t, name in enumerate(names):
                if not state[name]["fixed"] and state[name]["weights"] is not None:
                    bank.load_head(t, state[name]["weights"])  # (no finite validation loss ever: the last epoch)
            _, test_acc = _loss_acc(bank, test_x, test_y[:, cols].T)
            for t, name in enumerate(names):
                st = state[name]
                stopped = not st["fixed"] and st["weights"] is not None
                out[name] = {"acc": float(test_acc[t]), "val_acc": st["val_acc"],
                             "val_loss": st["best_loss"] if stopped else float("nan"),
                             "epochs": st["epoch"] if stopped else epoch, "epochs_run": epoch,
                             "capped": stopped and not st["done"] and epoch == max_epochs}
    return {name: out[name] for name in kinds}


def train_probe(kind: str, fit_x, fit_y, val_x, val_y, test_x, test_y, n_classes: int, lr=3e-4, batch_size=128,
                max_epochs=200, patience=10, hidden=None, seed=0, progress=None) -> dict:
    """One probe (validation-stopped): ``{kind}_acc``, ``{kind}_val_acc``, ``{kind}_epochs``, ``{kind}_epochs_run``."""
    r = train_probes({kind: kind}, fit_x, fit_y, val_x, val_y, test_x, test_y, n_classes, lr=lr, batch_size=batch_size,
                     max_epochs=max_epochs, patience=patience, hidden=hidden, seed=seed)[kind]
    return {f"{kind}_acc": r["acc"], f"{kind}_val_acc": r["val_acc"], f"{kind}_epochs": r["epochs"],
            f"{kind}_epochs_run": r["epochs_run"]}
