"""Linear and MLP probes on frozen representations (paper A.7.5: Adam 3e-4, batch 128, up to
200 epochs; the MLP is "two fully connected layers with a relu", whose hidden width in the
paper's public code equals the representation size).

Several probes, of one target or of several (the class, hair colour, attributes, style
labels), are trained in one loop as disjoint heads of one module: each head sees the
same mini-batches (the rows it has no label for are left out of its loss), and since the loss is a sum of per-head losses and Adam is per-parameter,
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
    return loss / max(1, x.shape[0]), correct / max(1, x.shape[0])


def _masked_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows with a label (y >= 0); 0 (with a zero gradient) when none has one."""
    return F.cross_entropy(logits, y, ignore_index=-1, reduction="sum") / (y >= 0).sum().clamp(min=1)


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
    """
    fit_y, val_y, test_y = _labels(fit_y), _labels(val_y), _labels(test_y)
    classes = [n_classes] * fit_y.shape[1] if isinstance(n_classes, int) else list(n_classes)
    g = torch.Generator().manual_seed(seed)
    heads = nn.ModuleDict()
    groups, column = [], {}
    for name, spec in kinds.items():  # each head's initialisation depends on its name only, not on its company
        spec = (spec,) if isinstance(spec, str) else tuple(spec)
        kind, head_lr, t = spec[0], spec[1] if len(spec) > 1 else lr, spec[2] if len(spec) > 2 else 0
        column[name] = t
        torch.manual_seed(seed + zlib.crc32(name.encode()))
        heads[name] = make_probe(kind, fit_x.shape[1], classes[t], hidden)
        groups.append({"params": list(heads[name].parameters()), "lr": head_lr})
    heads.to(fit_x.device)
    opt = torch.optim.Adam(groups, lr=lr)
    state = {name: {"best_loss": float("inf"), "epoch": 0, "weights": None, "val_acc": None, "done": False}
             for name in kinds}

    def labelled(x, y, t):  # the rows of x with a label for column t
        keep = y[:, t] >= 0
        return (x, y[:, t]) if bool(keep.all()) else (x[keep], y[keep, t])

    val_sets = {t: labelled(val_x, val_y, t) for t in set(column.values())} if val_x is not None else {}
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
                loss = sum(_masked_ce(heads[name](xb), yb[:, column[name]]) for name in active)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            heads.eval()
            if progress is not None:
                progress(epoch, max_epochs)
            if val_x is None:
                continue
            for name in active:
                val_loss, val_acc = _loss_acc(heads[name], *val_sets[column[name]])
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
            _, test_acc = _loss_acc(heads[name], *labelled(test_x, test_y, column[name]))
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
