"""The full, resolved configuration of a run: training, method options, evaluation.

Written to ``RUN_DIR/config.json`` as ``{"train": {...}, "method": {...}, "eval": {...}}``;
reading it back (for --resume, evaluate, or a --config file) goes through the same
strict parser, so unknown keys or impossible values are refused with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .config import parse_config, require, suggest
from .data.datasets import DATASETS
from .errors import ConfigError


@dataclass
class TrainConfig:
    dataset: str = field(default="fashion-mnist", metadata={"help": "data set: " + ", ".join(DATASETS)})
    method: str = field(default="simvae", metadata={"help": "method to train (see `simvae methods`)"})
    epochs: int = field(default=2, metadata={"help": "training epochs (the paper trains 400; 2 is the quick demo)"})
    batch_size: int = field(default=128, metadata={"help": "images per step (each with its J views), across all processes"})
    lr: float | None = field(default=None, metadata={"help": "Adam learning rate (default: the method's paper value, 8e-5; VICReg 1e-4)"})
    latent_dim: int | None = field(default=None, metadata={"help": "latent/representation size (default: 10 for MNIST/Fashion)"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation, shuffling, augmentation and sampling"})
    train_subset: int | None = field(default=None, metadata={"help": "train on the first N training images only"})
    data_dir: str | None = field(default=None, metadata={"help": "folder holding the data set's files"})
    binarize: bool | None = field(default=None, metadata={"help": "binarise images at 0.5 (default: on for MNIST, off otherwise)"})
    download: bool = field(default=True, metadata={"help": "download the data set with torchvision if not found"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast for the networks (measured 2.6-2.9x faster on CPUs with AMX, 2x with AVX-512 bf16; and on GPUs)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the method"})
    checkpoint_every: int = field(default=1, metadata={"help": "write a checkpoint every N epochs"})
    checkpoint_every_steps: int = field(default=0, metadata={"help": "also every N steps (0: off)"})
    checkpoint_minutes: float = field(default=10.0, metadata={"help": "also when this many minutes passed since the last (0: off)"})
    divergence_check_every: int = field(default=0, metadata={
        "help": "check the loss for NaN/inf every N steps; 0: every step on CPU (free), every 25 on a GPU (a check waits for it)"})

    def validate(self) -> None:
        require(self.dataset in DATASETS, f"unknown data set '{self.dataset}'{suggest(self.dataset, DATASETS)}; choose from {', '.join(DATASETS)}")
        from .methods import METHODS

        require(self.method in METHODS, f"unknown method '{self.method}'{suggest(self.method, METHODS)}; choose from {', '.join(sorted(METHODS))}")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.latent_dim is None or self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        require(self.train_subset is None or self.train_subset >= 1, f"train_subset must be >= 1, got {self.train_subset}")
        require(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        require(self.checkpoint_every_steps >= 0, f"checkpoint_every_steps must be >= 0, got {self.checkpoint_every_steps}")
        require(self.checkpoint_minutes >= 0, f"checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        require(self.divergence_check_every >= 0, f"divergence_check_every must be >= 0 (0: automatic), got {self.divergence_check_every}")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")


@dataclass
class EvalConfig:
    val_size: int = field(default=10000, metadata={"help": "training images held out to choose k and stop the probes"})
    knn_max_k: int = field(default=15, metadata={"help": "k-NN tries k = 1..this"})
    probe_lr: float = field(default=3e-4, metadata={"help": "Adam learning rate of the probes"})
    probe_batch_size: int = field(default=128, metadata={"help": "batch size of the probes"})
    probe_max_epochs: int = field(default=200, metadata={"help": "most epochs of probe training"})
    probe_patience: int = field(default=10, metadata={"help": "stop a probe after this many epochs without a better validation loss"})
    probe_hidden: int = field(default=512, metadata={"help": "hidden width of the MLP probe"})
    gmm_restarts: int = field(default=10, metadata={"help": "GMM initialisations (the paper uses 200)"})
    gmm_max_iter: int = field(default=200, metadata={"help": "EM iterations per GMM initialisation"})
    decoder_max_epochs: int = field(default=80, metadata={"help": "most epochs of the post-hoc decoder (discriminative methods)"})
    decoder_patience: int = field(default=5, metadata={"help": "stop the post-hoc decoder after this many epochs without a better validation MSE"})
    map_points: int = field(default=3000, metadata={"help": "test points in the 2-D t-SNE map"})
    seed: int = field(default=0, metadata={"help": "seed of the split, probes, GMM and map"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})

    def validate(self) -> None:
        require(self.val_size >= 1, f"val_size must be >= 1, got {self.val_size}")
        require(self.knn_max_k >= 1, f"knn_max_k must be >= 1, got {self.knn_max_k}")
        require(self.probe_lr > 0, f"probe_lr must be > 0, got {self.probe_lr}")
        require(self.probe_batch_size >= 1, f"probe_batch_size must be >= 1, got {self.probe_batch_size}")
        require(self.probe_max_epochs >= 1, f"probe_max_epochs must be >= 1, got {self.probe_max_epochs}")
        require(self.probe_patience >= 1, f"probe_patience must be >= 1, got {self.probe_patience}")
        require(self.probe_hidden >= 1, f"probe_hidden must be >= 1, got {self.probe_hidden}")
        require(self.gmm_restarts >= 1, f"gmm_restarts must be >= 1, got {self.gmm_restarts}")
        require(self.gmm_max_iter >= 1, f"gmm_max_iter must be >= 1, got {self.gmm_max_iter}")
        require(self.decoder_max_epochs >= 1, f"decoder_max_epochs must be >= 1, got {self.decoder_max_epochs}")
        require(self.decoder_patience >= 1, f"decoder_patience must be >= 1, got {self.decoder_patience}")
        require(self.map_points >= 0, f"map_points must be >= 0, got {self.map_points}")


@dataclass
class RunConfig:
    train: TrainConfig
    method: Any  # the method's own config dataclass
    eval: EvalConfig

    def to_dict(self) -> dict:
        return {"train": dataclasses.asdict(self.train), "method": dataclasses.asdict(self.method),
                "eval": dataclasses.asdict(self.eval)}

    def save(self, path: Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)


SECTIONS = ("train", "method", "eval")


def build_run_config(values: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Strictly parse ``{"train": ..., "method": ..., "eval": ...}`` into a RunConfig."""
    from .methods import method_config

    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a JSON object with sections {', '.join(SECTIONS)}")
    for key in values:
        if key not in SECTIONS:
            raise ConfigError(f"unknown section {key!r} in {where}{suggest(key, SECTIONS)}; valid sections: {', '.join(SECTIONS)}")
    train = parse_config(TrainConfig, values.get("train", {}), where=f"{where} section 'train'")
    method = method_config(train.method, values.get("method", {}))
    if train.lr is None:  # resolve to the method's default on this dataset so the saved config is complete
        from .methods import METHODS

        train = dataclasses.replace(train, lr=METHODS[train.method].lr_for(train.dataset))
    ev = parse_config(EvalConfig, values.get("eval", {}), where=f"{where} section 'eval'")
    return RunConfig(train, method, ev)


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 JSON text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
