"""The full, resolved configuration of a run: training, method options, evaluation.

Written to ``RUN_DIR/config.json`` as ``{"train": {...}, "method": {...}, "eval": {...}}``;
reading it back (for --resume, evaluate, or a --config file) goes through the same
strict parser, so unknown keys or impossible values are refused with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal, Mapping

from .config import Config, parse_config, replace, require, suggest
from .data.datasets import DATASETS
from .errors import ConfigError

from pydantic import Field  # noqa: E402


class TrainConfig(Config):
    dataset: str = Field("fashion-mnist", description="data set: " + ", ".join(DATASETS))
    method: str = Field("simvae", description="method to train (see `simvae methods`)")
    epochs: int = Field(2, description="training epochs (the paper trains 400; 2 is the quick demo)")
    views_per_step: int | None = Field(None, description="samples per optimiser step, counted in views, across all processes (paper A.7.4: 128 for every method "
                "and every J); images per step = this // views per image (at least 1). Default 128 unless --batch-size is given")
    batch_size: int | None = Field(None, description="images per step (each with its J views), across all processes: the alternative to --views-per-step")
    lr: float | None = Field(None, description="Adam learning rate (default: the method's value for the data set: the paper's 8e-5, VICReg 1e-4; "
                                        "SimCLR 8e-5 on Fashion-MNIST and 3e-4 on CIFAR-10, chosen on validation)")
    latent_dim: int | None = Field(None, description="latent/representation size (default: 10 for MNIST/Fashion, 64 for CIFAR-10/CelebA)")
    network: Literal["mlp", "conv"] | None = Field(None, description="encoder/decoder family for any method: mlp (paper Table 3) "
                                                   "or conv (Table 4, 32x32 or 64x64 images); default: the data set's")
    seed: int = Field(0, description="seed for initialisation, shuffling, augmentation and sampling")
    train_subset: int | None = Field(None, description="train on the first N training images only")
    data_dir: str | None = Field(None, description="folder holding the data set's files")
    binarize: bool | None = Field(None, description="binarise images at 0.5 (default: on for MNIST, off otherwise)")
    download: bool = Field(True, description="download the data set with torchvision if not found")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA GPUs that support it and on CPUs with native bf16 (AVX-512 BF16 or AMX), "
                "fp32 elsewhere; bf16 where the CPU only emulates it runs many times slower (a warning says so)")
    bf16: bool | None = Field(None, description="deprecated: use --precision bf16 / fp32")
    threads: int | None = Field(None, description="intra-op CPU threads (default: torch's choice, one per core); on a "
                                "machine shared with other jobs, 1 avoids oversubscription (measured 3.5x faster there)")
    compile: bool = Field(False, description="torch.compile the method")
    checkpoint_every: int = Field(1, description="write a checkpoint every N epochs")
    checkpoint_every_steps: int = Field(0, description="also every N steps (0: off)")
    checkpoint_minutes: float = Field(10.0, description="also when this many minutes passed since the last (0: off)")
    divergence_check_every: int = Field(0, description="check the loss for NaN/inf every N steps; 0: every step on CPU (free), every 25 on a GPU (a check waits for it)")

    def check(self) -> None:
        require(self.dataset in DATASETS, f"unknown data set '{self.dataset}'{suggest(self.dataset, DATASETS)}; choose from {', '.join(DATASETS)}")
        from .methods import METHODS

        require(self.method in METHODS, f"unknown method '{self.method}'{suggest(self.method, METHODS)}; choose from {', '.join(sorted(METHODS))}")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.batch_size is None or self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.views_per_step is None or self.views_per_step >= 1, f"views_per_step must be >= 1, got {self.views_per_step}")
        require(self.views_per_step is None or self.batch_size is None,
                f"give either views_per_step ({self.views_per_step}) or batch_size ({self.batch_size} images), not both: "
                "views per step is the paper's unit (128), batch size the per-image alternative")
        require(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.latent_dim is None or self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        require(self.train_subset is None or self.train_subset >= 1, f"train_subset must be >= 1, got {self.train_subset}")
        require(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        require(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        require(self.checkpoint_every_steps >= 0, f"checkpoint_every_steps must be >= 0, got {self.checkpoint_every_steps}")
        require(self.checkpoint_minutes >= 0, f"checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        require(self.divergence_check_every >= 0, f"divergence_check_every must be >= 0 (0: automatic), got {self.divergence_check_every}")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")


EVALUATOR_NAMES = ("knn", "probes", "gmm", "generation", "style")
"""What ``--skip`` accepts: the evaluators registered in ``simvae.evaluate`` (a test keeps the two equal)."""


class EvalConfig(Config):
    max_train_images: int | None = Field(None, description="evaluate with the first N training images (default: all); the test set is always whole")
    val_size: int = Field(10000, description="training images held out to choose k and stop the probes")
    knn_max_k: int = Field(15, description="k-NN tries k = 1..this")
    linear_lr_search: bool = Field(True, description="choose the linear probe's learning rate on validation among "
                                   "probe_lr x 1, 3, 10 (off: probe_lr, the paper's)")
    probe_lr: float = Field(3e-4, description="Adam learning rate of the probes")
    probe_batch_size: int = Field(128, description="batch size of the probes")
    probe_max_epochs: int = Field(200, description="most epochs of probe training")
    probe_patience: int = Field(10, description="stop a probe after this many epochs without a better validation loss")
    probe_hidden: int | None = Field(None, description="hidden width of the MLP probe (default: the representation size, as the paper's code: 10 or 64)")
    paper_probes: bool = Field(False, description="also train the probes by the paper's protocol (probe_max_epochs fixed epochs on the whole training "
                "set, scored once on test), reported under *_acc_paper_protocol keys")
    gmm_restarts: int = Field(10, description="GMM initialisations (the paper uses 200)")
    gmm_max_iter: int = Field(200, description="EM iterations per GMM initialisation")
    decoder_max_epochs: int = Field(80, description="most epochs of the post-hoc decoder (discriminative methods)")
    decoder_patience: int = Field(5, description="stop the post-hoc decoder after this many epochs without a better validation MSE")
    map_points: int = Field(3000, description="test points in the 2-D t-SNE map")
    skip: list[str] = Field(default_factory=list, description="evaluators to leave out: knn, probes, gmm, generation "
                            "(samples, FID), style (style retrieval), comma-separated: --skip generation,style keeps quick runs quick; "
                            "default: none")
    gen_samples: int = Field(10000, description="class-conditional samples generated (paper A.7.6; classifier FID and "
                             "samples.png)")
    fid_samples: int | None = Field(None, description="samples (and as many test images) for the Inception FID; default: "
                                    "10,000 on a GPU, 0 (off) on a CPU, where Inception costs about 6 GFLOP per image")
    style_max_train_images: int | None = Field(10000, description="training images whose augmented views fit the style "
                                               "probes and k-NN (default 10,000; the test set is whole)")
    style_bins: int = Field(4, description="equal-mass bins of the continuous style targets (crop scale, jitter factors)")
    seed: int = Field(0, description="seed of the split, probes, GMM and map")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")

    def check(self) -> None:
        require(self.max_train_images is None or self.max_train_images >= 10, f"max_train_images must be >= 10, got {self.max_train_images}")
        require(self.val_size >= 1, f"val_size must be >= 1, got {self.val_size}")
        require(self.knn_max_k >= 1, f"knn_max_k must be >= 1, got {self.knn_max_k}")
        require(self.probe_lr > 0, f"probe_lr must be > 0, got {self.probe_lr}")
        require(self.probe_batch_size >= 1, f"probe_batch_size must be >= 1, got {self.probe_batch_size}")
        require(self.probe_max_epochs >= 1, f"probe_max_epochs must be >= 1, got {self.probe_max_epochs}")
        require(self.probe_patience >= 1, f"probe_patience must be >= 1, got {self.probe_patience}")
        require(self.probe_hidden is None or self.probe_hidden >= 1, f"probe_hidden must be >= 1, got {self.probe_hidden}")
        require(self.gmm_restarts >= 1, f"gmm_restarts must be >= 1, got {self.gmm_restarts}")
        require(self.gmm_max_iter >= 1, f"gmm_max_iter must be >= 1, got {self.gmm_max_iter}")
        require(self.decoder_max_epochs >= 1, f"decoder_max_epochs must be >= 1, got {self.decoder_max_epochs}")
        require(self.decoder_patience >= 1, f"decoder_patience must be >= 1, got {self.decoder_patience}")
        require(self.map_points >= 0, f"map_points must be >= 0, got {self.map_points}")
        for name in self.skip:
            require(name in EVALUATOR_NAMES, f"unknown evaluator '{name}' in skip{suggest(name, EVALUATOR_NAMES)}; "
                    f"choose from {', '.join(EVALUATOR_NAMES)}")
        require(self.gen_samples >= 0, f"gen_samples must be >= 0, got {self.gen_samples}")
        require(self.fid_samples is None or self.fid_samples == 0 or self.fid_samples >= 2,
                f"fid_samples must be 0 (off) or >= 2, got {self.fid_samples}")
        require(self.style_max_train_images is None or self.style_max_train_images >= 10,
                f"style_max_train_images must be >= 10, got {self.style_max_train_images}")
        require(self.style_bins >= 2, f"style_bins must be >= 2, got {self.style_bins}")


@dataclasses.dataclass
class RunConfig:
    train: TrainConfig
    method: Any  # the method's own Config
    eval: EvalConfig

    def to_dict(self) -> dict:
        return {"train": self.train.model_dump(), "method": self.method.model_dump(), "eval": self.eval.model_dump()}

    def save(self, path: Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)


SECTIONS = ("train", "method", "eval")
DEFAULT_VIEWS_PER_STEP = 128  # paper A.7.4 / Fig. 8: "batch size of 128 for all reported methods and number of augmentations"


def step_size(run: RunConfig) -> tuple[int, int]:
    """(images per step, views per step) of ``run``, global across processes.

    With ``views_per_step`` V (the paper's unit) a step holds V // v images, at least 1, where
    v is the method's views per image (SimVAE J = 10: 12 images x 10 views; the pair methods and
    CR-VAE 2: 64 x 2; VAE 1: 128). With ``batch_size`` B it holds B images x v views.
    """
    from .methods import METHODS

    per_image = METHODS[run.train.method].views_per_image(run.method)
    if run.train.batch_size is not None:
        images = run.train.batch_size
    else:
        images = max(1, (run.train.views_per_step or DEFAULT_VIEWS_PER_STEP) // per_image)
    return images, images * per_image


def build_run_config(values: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Strictly parse ``{"train": ..., "method": ..., "eval": ...}`` into a RunConfig."""
    from .methods import method_config

    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a JSON object with sections {', '.join(SECTIONS)}")
    for key in values:
        if key not in SECTIONS:
            raise ConfigError(f"unknown section {key!r} in {where}{suggest(key, SECTIONS)}; valid sections: {', '.join(SECTIONS)}")
    train = parse_config(TrainConfig, values.get("train", {}), where=f"{where} section 'train'")
    if train.bf16 is not None:  # the old spelling: bf16 true/false -> precision bf16/fp32
        train = replace(train, precision="bf16" if train.bf16 else "fp32", bf16=None)
    if train.views_per_step is None and train.batch_size is None:  # the paper's unit, made explicit in config.json
        train = replace(train, views_per_step=DEFAULT_VIEWS_PER_STEP)
    method = method_config(train.method, values.get("method", {}))
    if train.lr is None:  # resolve to the method's default on this dataset so the saved config is complete
        from .methods import METHODS

        train = replace(train, lr=METHODS[train.method].lr_for(train.dataset))
    ev = parse_config(EvalConfig, values.get("eval", {}), where=f"{where} section 'eval'")
    return RunConfig(train, method, ev)


def model_spec(run: RunConfig, data_shape) -> "ModelSpec":
    """The networks' shape for ``run`` on data of ``data_shape`` [C, H, W]."""
    from .methods import ModelSpec

    from .presets import preset

    p = preset(run.train.dataset)
    network = run.train.network or p.network
    if network == "conv":
        from .nets.conv import SIZES

        _, h, w = data_shape
        if h != w or h not in SIZES:
            raise ConfigError(f"network conv (paper Table 4) takes square {' or '.join(f'{n}x{n}' for n in SIZES)} images; "
                              f"{run.train.dataset} has {h}x{w}: use --network mlp")
    return ModelSpec(tuple(data_shape), run.train.latent_dim or p.latent_dim, network)


def load_run_config(out: str | Path) -> RunConfig:
    """The config of run folder ``out`` (strictly parsed). Raises RunDirError when the folder
    holds no config.json or a damaged one."""
    from .errors import RunDirError

    path = Path(out) / "config.json"
    if not path.is_file():
        raise RunDirError(f"{out} is not a run folder (no config.json)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON ({e.msg}); the run folder is damaged") from None
    return build_run_config(values, where=str(path))


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
