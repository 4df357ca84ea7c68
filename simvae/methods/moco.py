"""MoCo (He et al., 2020) and MoCo v2 (Chen et al., 2020b): a momentum key encoder and a
FIFO queue of negative keys.

Per step, with two views of each image: q = normalise(g(f(x^1))) from the query encoder,
k = normalise(g_k(f_k(x^2))) from the momentum (key) encoder, no gradient, and

    loss = mean_i -log( exp(q_i.k_i/T) / (exp(q_i.k_i/T) + sum_m exp(q_i.queue_m/T)) )

After each optimiser step: theta_k <- m theta_k + (1 - m) theta_q, then the step's keys
(gathered from all processes under DDP) replace the oldest entries of the queue.

- MoCo (v1): no projection head; q and k are the L2-normalised encoder outputs. T = 0.7
  (the SimVAE paper's value; the original uses 0.07).
- MoCo v2: adds an MLP head (Linear-ReLU-Linear) to both encoders. T = 0.2. The SimVAE
  paper keeps the augmentations of the other methods (no blur).

Choices (documented, not stated in the SimVAE paper):
- the loss is asymmetric (x^1 queries, x^2 keys), as in MoCo v1/v2;
- momentum m = 0.99 (the original 0.999 suits ~5000 steps per ImageNet epoch; with 60k
  images and batch 128 an epoch is ~470 steps, where 0.99 is the common choice, e.g.
  solo-learn's CIFAR settings);
- queue size K = 4096 (the original 65536 is for 1.28M images). Keep K well below the
  number of training images: an image whose stale key is still queued when it comes
  back is its own negative. With 60k images and batch 128 the queue holds the last 32
  steps' keys;
- no shuffled BatchNorm (He et al. 2020, §3.3). Shuffling exists to stop per-process
  BatchNorm statistics from leaking which key belongs to which query; here every BatchNorm
  (the conv nets, ``nets/norm.py``) uses the statistics of the *global* batch, which a
  permutation of the keys across processes leaves unchanged, so a shuffle would be a no-op.
  (The leak through global-batch statistics is the same on one process, as in single-GPU
  MoCo; a per-process "split" BatchNorm would be the way to remove it.) The key encoder's
  BatchNorm buffers keep their own running statistics;
- the queue starts as random unit vectors, as in the original.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..config import Config, require
from ..dist import gather_no_grad
from ..nets.heads import mocov2_head
from ..objectives.infonce import moco_infonce_loss
from .base import Batch, register
from .discriminative import EncoderMethod, full_precision, validate_head, validate_temperature


@torch.no_grad()
def momentum_update(key_net: nn.Module, query_net: nn.Module, m: float) -> None:
    """theta_k <- m theta_k + (1 - m) theta_q, parameter by parameter."""
    for pk, pq in zip(key_net.parameters(), query_net.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


@torch.no_grad()
def fifo_enqueue(queue: torch.Tensor, ptr: int, keys: torch.Tensor) -> int:
    """Write ``keys`` [n, d] into the ring buffer ``queue`` [K, d] from slot ``ptr`` on,
    wrapping around (oldest entries are overwritten first); returns the next slot.
    With n > K only the last K keys survive, exactly as writing them one by one would."""
    size, n = queue.shape[0], keys.shape[0]
    slots = (ptr + torch.arange(n, device=queue.device)) % size
    queue[slots[-size:]] = keys[-size:].to(queue.dtype)
    return int((ptr + n) % size)


class MoCoConfig(Config):
    temperature: float = Field(0.7, description="temperature T of the InfoNCE softmax (paper: 0.7 MoCo, 0.2 MoCo v2)")
    momentum: float = Field(0.99, description="momentum m of the key encoder: theta_k <- m theta_k + (1-m) theta_q")
    queue_size: int = Field(4096, description="negative keys in the FIFO queue; keep well below the training set size")

    @property
    def n_views(self) -> int:
        return 2

    def check(self) -> None:
        validate_temperature(self.temperature)
        require(0.0 <= self.momentum <= 1.0, f"momentum must be in [0, 1], got {self.momentum}")
        require(self.queue_size >= 1, f"queue_size must be >= 1, got {self.queue_size}")


class MoCoV2Config(MoCoConfig):
    temperature: float = Field(0.2, description="temperature T of the InfoNCE softmax (paper: 0.7 MoCo, 0.2 MoCo v2)")
    head_hidden: int = Field(512, description="hidden width of the projection head")
    head_out: int = Field(128, description="output size of the projection head")

    def check(self) -> None:
        super().check()
        validate_head(self.head_hidden, self.head_out)


@register
class MoCo(EncoderMethod):
    name = "moco"
    config_cls = MoCoConfig

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.head, key_dim = self.build_head(spec.latent_dim)
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, key_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending_keys: torch.Tensor | None = None

    def build_head(self, in_dim: int) -> tuple[nn.Module, int]:
        """MoCo v1: no head."""
        return nn.Identity(), in_dim

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_head(self.key_encoder(x)).float(), dim=1)

    def forward(self, batch: Batch):
        q = self.queries(batch.views[:, 0])
        k = self.keys(batch.views[:, 1])
        with full_precision(q.device):
            loss = moco_infonce_loss(q.float(), k, self.queue, self.cfg.temperature)
        if self.training:  # enqueued in after_step, once the queue is no longer part of a graph
            self._pending_keys = gather_no_grad(k)
        return {"loss": loss}

    @torch.no_grad()
    def after_step(self) -> None:
        momentum_update(self.key_encoder, self.encoder, self.cfg.momentum)
        momentum_update(self.key_head, self.head, self.cfg.momentum)
        if self._pending_keys is not None:
            ptr = fifo_enqueue(self.queue, int(self.queue_ptr), self._pending_keys)
            self.queue_ptr.fill_(ptr)
            self._pending_keys = None


@register
class MoCoV2(MoCo):
    name = "mocov2"
    config_cls = MoCoV2Config

    def build_head(self, in_dim: int) -> tuple[nn.Module, int]:
        """MoCo v2: an MLP head on both the query and the key encoder."""
        return mocov2_head(in_dim, self.cfg.head_hidden, self.cfg.head_out), self.cfg.head_out
