"""Linear and MLP probes on frozen representations (paper A.7.5: Adam 3e-4, batch 128, up to
200 epochs; the MLP is "two fully connected layers with a relu", whose hidden width in the
paper's public code equals the representation size).

Several probes are trained in one loop as disjoint heads of one module: each head sees the
same mini-batches, and since the loss is a sum of per-head losses and Adam is per-parameter,
every head follows exactly the trajectory it would follow alone. The Python cost of a step
(the bottleneck for 10-d inputs) is paid once for all of them.

Two protocols:
- ``validation`` (the headline): train on the fit split, keep each head's epoch with the
  lowest validation loss (a head stops improving after ``patience`` epochs without a better
  one), then score that epoch once on test.
- ``fixed`` (the paper's): train on the whole training set for ``max_epochs`` and score the
  last epoch once on test.
"""

from __future__ import annotations

import copy
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


@torch.no_grad()
def _loss_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor, block: int = 16384) -> tuple[float, float]:
    loss, correct = 0.0, 0
    for s in range(0, x.shape[0], block):
        logits = model(x[s:s + block])
        loss += float(F.cross_entropy(logits, y[s:s + block], reduction="sum"))
        correct += int((logits.argmax(1) == y[s:s + block]).sum())
    return loss / x.shape[0], correct / x.shape[0]


def train_probes(kinds: dict[str, str | tuple[str, float]], fit_x: torch.Tensor, fit_y: torch.Tensor, val_x: torch.Tensor | None,
                 val_y: torch.Tensor | None, test_x: torch.Tensor, test_y: torch.Tensor, n_classes: int, lr: float = 3e-4,
                 batch_size: int = 128, max_epochs: int = 200, patience: int = 10, hidden: int | None = None,
                 seed: int = 0, progress=None, threads: int = 1) -> dict[str, dict]:
    """Train the probes ``{name: kind}`` (or ``{name: (kind, lr)}`` for a head of its own learning
    rate) together; return ``{name: {acc, val_acc, val_loss, epochs, epochs_run, capped}}``.

    fit_x [n, d] float, fit_y [n] int64 in 0..n_classes-1; with ``val_x`` None the fixed-epoch
    protocol is used (the last epoch is scored). ``capped`` is True when a head ran out of epochs
    before its patience ran out (it may still have been improving). ``progress(epoch, max_epochs)``
    is called after each epoch.
    """
    g = torch.Generator().manual_seed(seed)
    heads = nn.ModuleDict()
    groups = []
    for name, spec in kinds.items():  # each head's initialisation depends on its name only, not on its company
        kind, head_lr = spec if isinstance(spec, tuple) else (spec, lr)
        torch.manual_seed(seed + zlib.crc32(name.encode()))
        heads[name] = make_probe(kind, fit_x.shape[1], n_classes, hidden)
        groups.append({"params": list(heads[name].parameters()), "lr": head_lr})
    heads.to(fit_x.device)
    opt = torch.optim.Adam(groups, lr=lr)
    state = {name: {"best_loss": float("inf"), "epoch": 0, "weights": None, "val_acc": None, "done": False}
             for name in kinds}
    n = fit_x.shape[0]
    epoch = 0
    with intra_op_threads(threads):
        for epoch in range(1, max_epochs + 1):
            perm = torch.randperm(n, generator=g).to(fit_x.device)
            xs, ys = fit_x[perm], fit_y[perm]  # one gather per epoch, then contiguous slices
            heads.train()
            active = [name for name in kinds if not state[name]["done"]]
            for s in range(0, n, batch_size):
                xb, yb = xs[s:s + batch_size], ys[s:s + batch_size]
                loss = sum(F.cross_entropy(heads[name](xb), yb) for name in active)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            heads.eval()
            if progress is not None:
                progress(epoch, max_epochs)
            if val_x is None:
                continue
            for name in active:
                val_loss, val_acc = _loss_acc(heads[name], val_x, val_y)
                st = state[name]
                if val_loss < st["best_loss"]:
                    st.update(best_loss=val_loss, epoch=epoch, weights=copy.deepcopy(heads[name].state_dict()),
                              val_acc=val_acc)
                elif epoch - st["epoch"] >= patience:
                    st["done"] = True
            if all(st["done"] for st in state.values()):
                break
        out = {}
        for name in kinds:
            st = state[name]
            if val_x is not None:
                heads[name].load_state_dict(st["weights"])
            best_epoch = st["epoch"] if val_x is not None else epoch
            _, test_acc = _loss_acc(heads[name], test_x, test_y)
            out[name] = {"acc": test_acc, "val_acc": st["val_acc"], "val_loss": st["best_loss"], "epochs": best_epoch,
                         "epochs_run": epoch,
                         "capped": val_x is not None and not st["done"] and epoch == max_epochs}
    return out


def train_probe(kind: str, fit_x, fit_y, val_x, val_y, test_x, test_y, n_classes: int, lr=3e-4, batch_size=128,
                max_epochs=200, patience=10, hidden=None, seed=0, progress=None) -> dict:
    """One probe (validation-stopped): ``{kind}_acc``, ``{kind}_val_acc``, ``{kind}_epochs``, ``{kind}_epochs_run``."""
    r = train_probes({kind: kind}, fit_x, fit_y, val_x, val_y, test_x, test_y, n_classes, lr=lr, batch_size=batch_size,
                     max_epochs=max_epochs, patience=patience, hidden=hidden, seed=seed)[kind]
    return {f"{kind}_acc": r["acc"], f"{kind}_val_acc": r["val_acc"], f"{kind}_epochs": r["epochs"],
            f"{kind}_epochs_run": r["epochs_run"]}
