"""Linear and MLP probes on frozen representations (paper A.7.5: Adam 3e-4, batch 128, up
to 200 epochs), trained on cached tensors and stopped on validation loss: the epoch with
the lowest validation loss is kept and evaluated once on the test set."""

from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F


def make_probe(kind: str, in_dim: int, n_classes: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, n_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    raise ValueError(kind)


@torch.no_grad()
def _loss_acc(model, x, y, block=8192):
    loss, correct = 0.0, 0
    for s in range(0, x.shape[0], block):
        logits = model(x[s:s + block])
        loss += float(F.cross_entropy(logits, y[s:s + block], reduction="sum"))
        correct += int((logits.argmax(1) == y[s:s + block]).sum())
    return loss / x.shape[0], correct / x.shape[0]


def train_probe(kind: str, fit_x, fit_y, val_x, val_y, test_x, test_y, n_classes: int, lr=3e-4, batch_size=128,
                max_epochs=200, patience=10, hidden=512, seed=0, progress=None) -> dict:
    """Train on the fit split, early-stop on validation loss, report test accuracy once."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make_probe(kind, fit_x.shape[1], n_classes, hidden).to(fit_x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (float("inf"), 0, None)
    n = fit_x.shape[0]
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        perm = torch.randperm(n, generator=g).to(fit_x.device)
        model.train()
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            loss = F.cross_entropy(model(fit_x[idx]), fit_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        val_loss, val_acc = _loss_acc(model, val_x, val_y)
        if progress is not None:
            progress(kind, epoch, val_loss, val_acc)
        if val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()), val_acc)
        elif epoch - best[1] >= patience:
            break
    model.load_state_dict(best[2])
    _, test_acc = _loss_acc(model, test_x, test_y)
    return {f"{kind}_acc": test_acc, f"{kind}_val_acc": best[3], f"{kind}_epochs": best[1], f"{kind}_epochs_run": epoch}
