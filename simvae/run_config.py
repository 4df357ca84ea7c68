"""The full, resolved configuration of a run: training, method options, evaluation.

Written to ``RUN_DIR/config.json`` as ``{"train": {...}, "method": {...}, "eval": {...}}``;
reading it back (for --resume, evaluate, or a --config file) goes through the same
strict parser, so unknown keys or impossible values are refused with a one-line message.

Config assembly lives here, for the command line and the Python API alike
(``assemble_run_config``: a base config with options laid over it section by section, method
options checked against the chosen method), as do the rules that say which keys define an
experiment (``experiment_keys``, ``NEUTRAL_TRAIN_KEYS``) and how a run loads its data
(``load_data``, ``data_preset``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from pydantic import Field

from .config import Config, parse_config, replace, require, suggest
from .data import DATASETS, ImageData, Preset, dataset, load_dataset
from .errors import ConfigError

if TYPE_CHECKING:
    from .methods import ModelSpec


class TrainConfig(Config):
    dataset: str = Field("fashion-mnist", description="data set: " + ", ".join(DATASETS))
    method: str = Field("simvae", description="method to train (see `simvae methods`)")
    epochs: int = Field(2, ge=1, description="training epochs (the paper trains 400; 2 is the quick demo)")
    views_per_step: int | None = Field(
        None,
        ge=1,
        description="samples per optimiser step, counted in views, across all processes (paper A.7.4: 128 for every method "
        "and every J); images per step = this // views per image (at least 1). Default 128 unless --batch-size is given",
    )
    batch_size: int | None = Field(
        None, ge=1, description="images per step (each with its J views), across all processes: the alternative to --views-per-step"
    )
    lr: float | None = Field(
        None,
        gt=0,
        description="Adam learning rate (default: the method's value for the data set: the paper's 8e-5, VICReg 1e-4; "
        "SimCLR 8e-5 on Fashion-MNIST and 3e-4 on CIFAR-10, chosen on validation)",
    )
    latent_dim: int | None = Field(
        None, ge=1, description="latent/representation size (default: the data set's, 10 for MNIST/Fashion, 64 for CIFAR-10/CelebA)"
    )
    network: Literal["mlp", "conv"] | None = Field(
        None,
        description="encoder/decoder family for any method: mlp (paper Table 3) "
        "or conv (Table 4, 32x32 or 64x64 images); default: the data set's",
    )
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning-rate schedule: constant (the paper's) or cosine decay to 0 over the run (after any warm-up)"
    )
    warmup_fraction: float = Field(
        0.0, ge=0, lt=1, description="share of the run's steps with a linear learning-rate warm-up from 0 (any schedule)"
    )
    seed: int = Field(0, description="seed for initialisation, shuffling, augmentation and sampling")
    train_subset: int | None = Field(None, ge=1, description="train on the first N training images only")
    data_dir: str | None = Field(None, description="folder holding the data set's files")
    binarize: bool | None = Field(None, description="binarise images at 0.5 (default: on for MNIST, off otherwise)")
    download: bool = Field(True, description="download the data set with torchvision if not found")
    image_size: Literal[28, 32, 64] | None = Field(
        None, description="image folders: side of the square images after resizing (default: from the images' median size)"
    )
    channels: Literal[1, 3] | None = Field(None, description="image folders: 1 (grey) or 3 (colour); default: colour if any image is")
    test_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="image folders without train/ and test/: the share of images "
        "held out as the test set (a fixed seeded split, recorded in the run folder)",
    )
    strict: bool = Field(False, description="image folders: stop on the first unreadable image instead of listing and skipping it")
    groups: str | None = Field(
        None,
        description="CSV file with columns path,group (paths relative to --data-dir): each group of "
        "related images is one group of the paper's model (§3), instead of augmentations of one image",
    )
    augment: Literal["default", "none"] = Field(
        "default", description="default: the data set's augmentation (paper Table 2); none: views are the images themselves (for --groups)"
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast on CUDA GPUs that support it and on CPUs whose bf16 matrix product measures at "
        "least 1.5x fp32 (timed once per host), fp32 elsewhere; bf16 where the CPU only emulates it runs many times slower "
        "(a warning says so)",
    )
    bf16: bool | None = Field(None, description="deprecated: use --precision bf16 / fp32")
    threads: int | None = Field(
        None,
        ge=1,
        description="intra-op CPU threads (default: one per core that other processes "
        "leave free, measured at the start and every 5 s while training; OpenMP threads spin only briefly while they wait); "
        "a count given here is kept",
    )
    compile: bool = Field(False, description="torch.compile the method")
    checkpoint_every: int = Field(1, ge=1, description="write a checkpoint every N epochs")
    checkpoint_every_steps: int = Field(0, ge=0, description="also every N steps (0: off)")
    checkpoint_minutes: float = Field(10.0, ge=0, description="also when this many minutes passed since the last (0: off)")
    divergence_check_every: int = Field(
        0,
        ge=0,
        description="check the loss for NaN/inf every N steps; 0: every step on CPU (free), every 25 on a GPU (a check waits for it)",
    )
    logger: list[Literal["csv", "tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="experiment logs, comma-separated: csv (RUN_DIR/logs/steps.csv, epochs.csv), "
        "tensorboard (RUN_DIR/logs/tensorboard/; pip install 'simvae[tensorboard]'), wandb (offline, RUN_DIR/logs/wandb/; "
        "pip install 'simvae[wandb]'): the loss terms, learning rate and views/s every 1/200 epoch, and each epoch "
        "a validation k-NN accuracy (2,000 training images against 5,000 others); default: none",
    )

    def check(self) -> None:
        require(
            self.dataset in DATASETS,
            f"unknown data set '{self.dataset}'{suggest(self.dataset, DATASETS)}; choose from {', '.join(DATASETS)}",
        )
        from .methods import METHODS

        require(
            self.method in METHODS,
            f"unknown method '{self.method}'{suggest(self.method, METHODS)}; choose from {', '.join(sorted(METHODS))}",
        )
        require(
            self.views_per_step is None or self.batch_size is None,
            f"give either views_per_step ({self.views_per_step}) or batch_size ({self.batch_size} images), not both: "
            "views per step is the paper's unit (128), batch size the per-image alternative",
        )
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'",
        )
        from importlib.util import find_spec

        for name in self.logger:  # refused before a run folder is made
            require(
                name == "csv" or find_spec(name) is not None,
                f"--logger {name} needs the '{name}' package, which is not installed here: pip install 'simvae[{name}]'",
            )
        spec = DATASETS[self.dataset]
        for name in ("image_size", "channels", "groups"):
            if getattr(self, name) is not None and name not in spec.options:
                takes = [n for n, s in DATASETS.items() if name in s.options]
                raise ConfigError(
                    f"option --{name.replace('_', '-')} does not apply to data set '{self.dataset}'"
                    + (f"; it applies to {', '.join(takes)}" if takes else "")
                )


class EvalConfig(Config):
    max_train_images: int | None = Field(
        None, ge=10, description="evaluate with the first N training images (default: all); the test set is always whole"
    )
    val_size: int = Field(10000, ge=1, description="training images held out to choose k and stop the probes")
    knn_max_k: int = Field(15, ge=1, description="k-NN tries k = 1..this")
    linear_lr_search: bool = Field(
        True, description="choose the linear probe's learning rate on validation among probe_lr x 1, 3, 10 (off: probe_lr, the paper's)"
    )
    probe_lr: float = Field(3e-4, gt=0, description="Adam learning rate of the probes")
    probe_batch_size: int = Field(128, ge=1, description="batch size of the probes")
    probe_max_epochs: int = Field(200, ge=1, description="most epochs of probe training")
    probe_patience: int = Field(10, ge=1, description="stop a probe after this many epochs without a better validation loss")
    probe_hidden: int | None = Field(
        None, ge=1, description="hidden width of the MLP probe (default: the representation size, as the paper's code: 10 or 64)"
    )
    paper_probes: bool = Field(
        False,
        description="also train the probes by the paper's protocol (probe_max_epochs fixed epochs on the whole training "
        "set, scored once on test), reported under *_acc_paper_protocol keys",
    )
    gmm_restarts: int = Field(10, ge=1, description="GMM initialisations (the paper uses 200)")
    gmm_max_iter: int = Field(200, ge=1, description="EM iterations per GMM initialisation")
    decoder_max_epochs: int = Field(80, ge=1, description="most epochs of the post-hoc decoder (discriminative methods)")
    decoder_patience: int = Field(5, ge=1, description="stop the post-hoc decoder after this many epochs without a better validation MSE")
    map_points: int = Field(3000, ge=0, description="test points in the 2-D t-SNE map")
    skip: list[str] = Field(
        default_factory=list,
        description="evaluators to leave out (see `simvae evaluate --help`: knn, "
        "probes, gmm, generation, style, ...), comma-separated: --skip generation,style keeps quick runs quick; "
        "default: none",
    )
    gen_samples: int = Field(10000, ge=0, description="class-conditional samples generated (paper A.7.6; classifier FID and samples.png)")
    fid_samples: int | None = Field(
        None,
        description="samples (and as many test images) for the Inception FID; default: "
        "10,000 on a GPU, 0 (off) on a CPU, where Inception costs about 6 GFLOP per image",
    )
    style_max_train_images: int | None = Field(
        10000,
        ge=10,
        description="training images whose augmented views fit the style probes and k-NN (default 10,000; the test set is whole)",
    )
    style_bins: int = Field(4, ge=2, description="equal-mass bins of the continuous style targets (crop scale, jitter factors)")
    quick: bool = Field(
        False,
        description="the quick evaluation preset for short runs (10k training images, short probes, "
        "1 GMM restart): its figures are labelled quick",
    )
    seed: int = Field(0, description="seed of the split, probes, GMM and map")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")

    def check(self) -> None:
        require(
            self.fid_samples is None or self.fid_samples == 0 or self.fid_samples >= 2,
            f"fid_samples must be 0 (off) or >= 2, got {self.fid_samples}",
        )


@dataclasses.dataclass
class RunConfig:
    train: TrainConfig
    method: Any  # the method's own Config
    eval: EvalConfig

    def to_dict(self) -> dict:
        return {"train": self.train.model_dump(), "method": self.method.model_dump(), "eval": self.eval.model_dump()}

    def save(self, path: Path) -> None:
        """Write the config as JSON (atomically; RunDirError when it cannot be written)."""
        from .rundir import atomic_write_json

        atomic_write_json(path, self.to_dict())


SECTIONS = ("train", "method", "eval")

NEUTRAL_TRAIN_KEYS = frozenset(
    {
        "device",
        "threads",
        "compile",
        "checkpoint_every",
        "checkpoint_every_steps",
        "checkpoint_minutes",
        "divergence_check_every",
        "data_dir",
        "download",
        "logger",
    }
)
"""Training options that do not change the experiment (where and how fast it runs, how often it is
saved or checked, where its files are): ``--resume`` accepts them, ``compare`` groups runs that
differ only in them, and a run's config may differ from its checkpoint's in them."""

QUICK_EVAL = {
    "max_train_images": 10000,
    "val_size": 2000,
    "probe_max_epochs": 50,
    "probe_patience": 5,
    "gmm_restarts": 1,
    "decoder_max_epochs": 10,
    "decoder_patience": 3,
    "map_points": 1000,
    "style_max_train_images": 5000,
    "gen_samples": 2000,
}
"""The quick-evaluation preset (``--quick-eval``, EvalConfig ``quick``): for short runs, minutes instead of a quarter hour."""


def experiment_keys(config: Mapping[str, Any]) -> dict[str, str]:
    """The flattened keys that define an experiment, ``{"section.key": JSON text of the value}``,
    from a config mapping (``RunConfig.to_dict()`` or a config.json): every train and method key
    except the seed and ``NEUTRAL_TRAIN_KEYS``. Evaluation settings are not part of it."""
    out = {}
    for section in ("train", "method"):
        for key, value in (config.get(section) or {}).items():
            if section == "train" and (key in NEUTRAL_TRAIN_KEYS or key == "seed"):
                continue
            out[f"{section}.{key}"] = json.dumps(value, sort_keys=True)
    return out


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
    method = method_config(train.method, values.get("method", {}), where=f"{where} section 'method'")
    if train.lr is None:  # resolve to the method's default on this dataset so the saved config is complete
        from .methods import METHODS

        train = replace(train, lr=METHODS[train.method].lr_for(train.dataset))
    ev = parse_config(EvalConfig, values.get("eval", {}), where=f"{where} section 'eval'")
    return RunConfig(train, method, ev)


def data_options(train: TrainConfig) -> dict:
    """The loader options of ``train``'s data set (``simvae.data.load_dataset`` keywords)."""
    spec = dataset(train.dataset)
    opts = {"data_dir": train.data_dir, "binarize": train.binarize, "download": train.download}
    for name in spec.options:
        if hasattr(train, name):
            opts[name] = getattr(train, name)
    return opts


def load_data(train: TrainConfig) -> ImageData:
    """The data set of a training config, loaded (see ``simvae.data.load_dataset``). Raises DataError."""
    return load_dataset(train.dataset, **data_options(train))


def resolve_data_shape(run: RunConfig, data: ImageData) -> RunConfig:
    """``run`` with the image size and channel count its data was loaded at, for data sets that take
    them as options (image folders decide them from the images when not given): recorded in
    config.json, so that evaluating or resuming decodes the images the same way."""
    spec = dataset(run.train.dataset)
    if "image_size" not in spec.options or (run.train.image_size is not None and run.train.channels is not None):
        return run
    c, h, _ = data.image_shape
    return dataclasses.replace(run, train=replace(run.train, image_size=h, channels=c))


def data_preset(run: RunConfig, data_shape) -> Preset:
    """The preset (network, latent size, augmentation) of ``run``'s data set for images of
    ``data_shape`` [C, H, W], with ``--augment none`` applied."""
    import dataclasses as dc

    from .data import NO_AUGMENT

    p = dataset(run.train.dataset).preset_for(tuple(data_shape))
    return dc.replace(p, augment=NO_AUGMENT) if run.train.augment == "none" else p


def model_spec(run: RunConfig, data_shape) -> "ModelSpec":
    """The networks' shape for ``run`` on data of ``data_shape`` [C, H, W]. Raises ConfigError for
    the conv nets on images they do not take."""
    from .methods import ModelSpec

    p = data_preset(run, data_shape)
    network = run.train.network or p.network
    if network == "conv":
        from .nets.conv import SIZES

        _, h, w = data_shape
        if h != w or h not in SIZES:
            raise ConfigError(
                f"network conv (paper Table 4) takes square {' or '.join(f'{n}x{n}' for n in SIZES)} images; "
                f"{run.train.dataset} has {h}x{w}: use --network mlp"
            )
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


def method_option_table() -> dict[str, dict]:
    """Option name -> {help, methods that take it, defaults per method, first method}, over every
    registered method (in ``METHOD_ORDER``): which method an option belongs to."""
    from .methods import METHODS, method_names

    table: dict[str, dict] = {}
    for mname in method_names():
        for name, f in METHODS[mname].config_cls.model_fields.items():
            entry = table.setdefault(name, {"help": f.description or "", "methods": [], "defaults": {}, "first": mname})
            entry["methods"].append(mname)
            entry["defaults"][mname] = f.default
    return table


def _section(values: Mapping, name: str, where: str) -> dict:
    section = values.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"section '{name}' of {where} must be a JSON object, got {type(section).__name__}")
    return dict(section)


def assemble_run_config(
    base: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    method: Mapping[str, Any] | None = None,
    eval: Mapping[str, Any] | None = None,
    text: bool = False,
    where: str = "options",
) -> RunConfig:
    """A run's config from a base (a ``--config`` file, a run's own config.json, or the Python
    API's mapping ``{"train": ..., "method": ..., "eval": ...}``) with options laid over it section
    by section. With ``text`` the options are command-line text, converted by each field's type
    (``config.from_text``). A method option that the chosen method does not take is refused naming
    the methods that take it. Raises ConfigError in one line for anything refused."""
    from .config import from_text
    from .methods import METHODS

    base = {} if base is None else base
    if not isinstance(base, Mapping):
        raise ConfigError(f"{where} must be a JSON object with sections {', '.join(SECTIONS)}, got {type(base).__name__}")
    values = {k: (_section(base, k, where) if k in SECTIONS else v) for k, v in base.items()}
    for name, cls, opts in (("train", TrainConfig, train), ("eval", EvalConfig, eval)):
        if opts:
            converted = {k: from_text(cls, k, v) if text and k in cls.model_fields else v for k, v in opts.items()}
            if name == "eval" and converted.get("quick") is True:  # the quick preset, under the explicit options
                values["eval"] = {**values.get("eval", {}), **QUICK_EVAL}
            values.setdefault(name, {}).update(converted)
    if method:
        name = values.get("train", {}).get("method", TrainConfig.model_fields["method"].default)
        table = method_option_table()
        for key in method:
            if key in table and name not in table[key]["methods"]:
                raise ConfigError(
                    f"option --{key.replace('_', '-')} does not apply to method '{name}' (it applies to {', '.join(table[key]['methods'])})"
                )
        if text and name in METHODS:
            cls = METHODS[name].config_cls
            method = {k: from_text(cls, k, v) if k in cls.model_fields else v for k, v in method.items()}
        values.setdefault("method", {}).update(method)
    return build_run_config(values, where=where)
