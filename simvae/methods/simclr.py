"""SimCLR (Chen et al., 2020a): NT-Xent on cosine similarities of projected views.

    h = f(x^j) (representation),  z = g(h) (projection head),
    loss = NT-Xent over the J views of every image in the global batch, temperature T.

The paper uses T = 0.7 and J = 2; J > 2 views are supported (every other view of the same
image is a positive). Under DDP the loss is computed on the gathered global batch, so
each image meets every other image of the step as a negative, as on one process.
"""

from __future__ import annotations

from pydantic import Field

from ..config import Config, require
from ..dist import gather_with_grad
from ..nets.heads import simclr_head
from ..objectives.infonce import nt_xent_loss
from .base import Batch, register
from .discriminative import EncoderMethod, full_precision, validate_head, validate_temperature


class SimCLRConfig(Config):
    n_views: int = Field(2, description="J, augmented views per image (SimCLR: 2)")
    temperature: float = Field(0.7, description="temperature T of the InfoNCE softmax (paper: 0.7)")
    head_hidden: int = Field(512, description="hidden width of the projection head")
    head_out: int = Field(128, description="output size of the projection head")

    def check(self) -> None:
        require(self.n_views >= 2, f"n_views must be >= 2 for SimCLR, got {self.n_views}")
        validate_temperature(self.temperature)
        validate_head(self.head_hidden, self.head_out)


@register
class SimCLR(EncoderMethod):
    name = "simclr"
    config_cls = SimCLRConfig
    min_batch_size = 2  # negatives come from the other images of the batch
    # The paper tunes SimCLR's learning rate per data set (8e-5 ... 1e-3, A.7.4). Fashion-MNIST:
    # 8e-5 by a validation ablation, now `simvae sweep --param train.lr` (validation k-NN 0.697 / 0.684 / 0.681 for 8e-5 / 3e-4 / 1e-3, 2 epochs);
    # CIFAR-10 (JPEG copy, conv nets): 3e-4 (validation k-NN 0.338 / 0.368 / 0.339, linear 0.381 / 0.386 / 0.377, 2 epochs).
    default_lr_by_dataset = {"fashion-mnist": 8e-5, "cifar10": 3e-4}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.head = simclr_head(spec.latent_dim, cfg.head_hidden, cfg.head_out)

    def forward(self, batch: Batch):
        b, j = batch.views.shape[:2]
        z = self.head(self.view_features(batch).flatten(0, 1)).view(b, j, -1)
        with full_precision(z.device):
            loss = nt_xent_loss(gather_with_grad(z.float()), self.cfg.temperature)
        return {"loss": loss}
