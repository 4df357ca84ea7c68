"""A trained run, loaded back: its config, its method (weights from the checkpoint) and data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .augment import to_float
from .checkpoint import CHECKPOINT_NAME, is_finished, load_checkpoint, load_model_state
from .data import AugmentSpec, ImageData, dataset
from .hardware import resolve_device
from .methods import Method, ModelSpec, build_method
from .nets import build_decoder, use_fast_layout
from .run_config import RunConfig, load_data, load_run_config, model_spec
from .rundir import DECODER, atomic_torch_save

DECODER_NAME = DECODER


@dataclass
class Run:
    path: Path
    config: RunConfig
    method: Method
    device: torch.device
    _data: ImageData | None = field(default=None, repr=False)
    state: dict = field(default_factory=dict)  # the checkpoint's epoch/step (model_epoch, ..., finished)

    def describe_state(self) -> str:
        """'epoch 1 + 2 steps (step 12) of 6 epochs, unfinished' or '6 epochs (step 2814), finished'."""
        s = self.state
        if not s:
            return "unknown state"
        where = f"epoch {s['model_epoch']}" + (f" + {s['model_epoch_step']} steps" if s["model_epoch_step"] else "")
        return f"{where} (step {s['model_step']}) of {s['epochs_planned']} epochs, " + ("finished" if s["finished"] else "unfinished")

    @property
    def data(self) -> ImageData:
        if self._data is None:
            self._data = load_data(self.config.train)
        return self._data

    @property
    def augment_spec(self) -> AugmentSpec:
        """The data set's own augmentation (paper Table 2; the preset's, even for a run trained with
        ``--augment none``): what style retrieval and the augmentation figure apply."""
        return dataset(self.config.train.dataset).preset_for(self.data.image_shape).augment

    def _batches(self, images: torch.Tensor, fn, batch_size: int = 4096) -> torch.Tensor:
        out = []
        self.method.eval()
        with torch.no_grad():
            for s in range(0, images.shape[0], batch_size):
                x = images[s : s + batch_size].to(self.device)
                x = to_float(x) if x.dtype == torch.uint8 else x.float()
                out.append(fn(x).float().cpu())
        return torch.cat(out)

    def encode(self, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Representations (posterior means, or encoder outputs) of un-augmented images.

        images: uint8 [n, C, H, W] in [0, 255] or float in [0, 1]."""
        return self._batches(images, self.method.encode, batch_size)

    def embed(self, images: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(means, variances) of un-augmented images, float32 [n, d] on the CPU: for the generative
        methods the mean and variance of q(z|x) (``method.posterior``), for the others the encoder's
        output and None.

        images: uint8 [n, C, H, W] in [0, 255] or float in [0, 1]; images of another size than the
        run's are resized (bilinear, antialiased). Raises DataError when C is not the run's."""
        from .errors import DataError

        c, h, w = self.method.spec.image_shape
        if images.ndim != 4 or images.shape[1] != c:
            got = f"{images.shape[1]} channels" if images.ndim == 4 else f"shape {tuple(images.shape)}"
            raise DataError(f"these images have {got}; the run {self.path} takes [n, {c}, H, W] ({'grey' if c == 1 else 'colour'}) images")
        if tuple(images.shape[-2:]) != (h, w):
            images = images if images.dtype != torch.uint8 else to_float(images)
            images = torch.nn.functional.interpolate(
                images.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False
            ).clamp(0, 1)
        posterior = getattr(self.method, "posterior", None)
        if not self.method.generative or posterior is None:
            return self.encode(images, batch_size), None
        out = self._batches(images, lambda x: torch.cat(posterior(x), dim=1), batch_size)
        mean, logvar = out.chunk(2, dim=1)
        return mean.contiguous(), logvar.exp()

    def reconstruct(self, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor | None:
        """Decoded representations of images (uint8 or float [n, C, H, W]) -> float [n, C, H, W] in
        [0, 1] on the CPU; None when the method has no decoder (own or post-hoc)."""
        if not self.method.has_decoder:
            return None
        return self._batches(images, self.method.reconstruct, batch_size)

    def decode(self, z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor | None:
        """Images float [n, C, H, W] in [0, 1] (CPU) decoded from representations z [n, d]; None
        without a decoder."""
        if not self.method.has_decoder:
            return None
        out = []
        with torch.no_grad():
            for s in range(0, z.shape[0], batch_size):
                out.append(self.method.decode(z[s : s + batch_size].to(self.device).float()).float().cpu())
        return torch.cat(out) if out else z.new_zeros((0, *self.method.spec.image_shape))

    def train_summary(self) -> dict:
        p = self.path / "train_summary.json"
        return json.loads(p.read_text()) if p.is_file() else {}


def save_decoder(decoder: torch.nn.Module, path: str | Path) -> None:
    """A post-hoc decoder's weights (plain tensors) and how it was fitted (validation MSE, epochs),
    written atomically."""
    atomic_torch_save(
        {
            "state": {k: v.detach().cpu() for k, v in decoder.state_dict().items()},
            "val_mse": float(getattr(decoder, "val_mse", float("nan"))),
            "epochs": int(getattr(decoder, "epochs", 0)),
            "max_epochs": int(getattr(decoder, "max_epochs", 0)),
        },
        path,
    )


def load_decoder(path: str | Path, spec: ModelSpec, device="cpu") -> torch.nn.Module:
    """A decoder of ``spec``'s architecture with the weights saved at ``path`` (eval mode); its
    ``val_mse``, ``epochs`` and ``max_epochs`` attributes say how it was fitted (NaN/0 if unknown)."""
    saved = torch.load(Path(path), map_location=device, weights_only=True)
    state = saved["state"] if "state" in saved else saved  # files of simvae 0.1 hold the state dict alone
    decoder = use_fast_layout(build_decoder(spec.network, spec.image_shape, spec.latent_dim).to(device), spec.network, device)
    decoder.load_state_dict(state)
    decoder.val_mse = float(saved.get("val_mse", float("nan")))  # type: ignore[attr-defined]
    decoder.epochs = int(saved.get("epochs", 0))  # type: ignore[attr-defined]
    decoder.max_epochs = int(saved.get("max_epochs", 0))  # type: ignore[attr-defined]
    return decoder.eval()


def load_run(path: str | Path, device: str = "auto", data: ImageData | None = None) -> Run:
    """Load a run folder written by ``simvae train`` (weights loaded with weights_only=True)."""
    path = Path(path)
    cfg = load_run_config(path)
    dev = resolve_device(device)
    ckpt = load_checkpoint(path / CHECKPOINT_NAME, map_location=dev)
    if data is None:
        data = load_data(cfg.train)
    method = build_method(cfg.train.method, model_spec(cfg, data.image_shape), cfg.to_dict()["method"])
    load_model_state(method, ckpt["model"], cfg.train.method, ckpt.get("method"), path / CHECKPOINT_NAME)
    use_fast_layout(method.to(dev), method.spec.network, dev).eval()
    epoch, epoch_step = int(ckpt.get("epoch", 0)), int(ckpt.get("epoch_step", 0))
    state = {
        "model_epoch": epoch,
        "model_epoch_step": epoch_step,
        "model_step": int(ckpt.get("step", 0)),
        "epochs_planned": cfg.train.epochs,
        "finished": is_finished(epoch, epoch_step, cfg.train.epochs),
    }
    run = Run(path, cfg, method, dev, data, state=state)
    decoder = path / DECODER_NAME
    ckpt_path = path / CHECKPOINT_NAME
    if not method.generative and decoder.is_file() and decoder.stat().st_mtime >= ckpt_path.stat().st_mtime:
        method.attach_decoder(load_decoder(decoder, method.spec, dev))  # fitted by an earlier evaluation
    return run
