"""The ``simvae`` command: thin over the Python API (train, evaluate, compare).

Every option is validated before any work starts; a user error prints one line to
stderr (with the closest valid name where there is one) and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import textwrap
import time
import typing
from pathlib import Path

from .config import suggest
from .errors import SimvaeError

TRAIN_CLI_SKIP = {"method_options"}
# What an option left unset (None) means, where its help text does not already say it.
UNSET_MEANS = {"train_subset": "all training images"}


# Names other tools give our options and commands (suggested when one is given): spelling
# similarity alone would suggest --linear-lr-search for --learning-rate.
OPTION_ALIASES = {
    "--learning-rate": "--lr",
    "--learningrate": "--lr",
    "--batch": "--batch-size",
    "--bs": "--batch-size",
    "--batchsize": "--batch-size",
    "--views": "--n-views",
    "--num-views": "--n-views",
    "--nviews": "--n-views",
    "--augmentations": "--n-views",
    "--n-augmentations": "--n-views",
    "--epoch": "--epochs",
    "--n-epochs": "--epochs",
    "--num-epochs": "--epochs",
    "--max-epochs": "--epochs",
    "--output": "--out",
    "--output-dir": "--out",
    "--out-dir": "--out",
    "--outdir": "--out",
    "--run-dir": "--out",
    "--data": "--data-dir",
    "--data-path": "--data-dir",
    "--data-root": "--data-dir",
    "--root": "--data-dir",
    "--latent": "--latent-dim",
    "--z-dim": "--latent-dim",
    "--zdim": "--latent-dim",
    "--latent-size": "--latent-dim",
    "--model": "--method",
    "--algorithm": "--method",
    "--gpu": "--device",
    "--cuda": "--device",
    "--subset": "--train-subset",
    "--n-train": "--train-subset",
    "--quick": "--quick-eval",
    "--fast": "--quick-eval",
    "--num-threads": "--threads",
    "--prior-variance": "--prior-var",
    "--likelihood-variance": "--likelihood-var",
    "--temp": "--temperature",
    "--tau": "--temperature",
    "--continue": "--resume",
    "--force": "--overwrite",
}
COMMAND_ALIASES = {"eval": "evaluate", "fit": "train", "run": "train", "list": "methods", "diff": "compare"}


def _closest_option(given: str, opts: list[str]) -> str:
    """' (did you mean '--x'?)': the same option spelt with '_' or another case, a known alias, else
    the closest spelling; '' when nothing is close."""
    name = given.split("=")[0]
    norm = "--" + name.lstrip("-").replace("_", "-").lower()
    for candidate in (norm, OPTION_ALIASES.get(norm)):
        if candidate and candidate != name and candidate in opts:
            return f" (did you mean '{candidate}'?)"
    return suggest(name, opts)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, without breaking words at hyphens (``fashion-mnist``, ``--views-per-step``)."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are one line, name the command, and suggest the closest option or command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            bad = message.split(":", 1)[1].split()
            if not bad:
                self.exit(2, f"{self.prog}: error: unrecognized empty argument; see '{self.prog} --help'\n")
            opts = [o for a in self._actions for o in a.option_strings]
            first = next((b for b in bad if b.startswith("-")), bad[0])
            message = f"unrecognized option {first}{_closest_option(first, opts)}; see '{self.prog} --help'"
        choice = re.match(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if choice:
            what, bad, choices = choice[1], choice[2], re.findall(r"'([^']*)'", choice[3]) or choice[3].split(", ")
            alias = COMMAND_ALIASES.get(bad) if what == "COMMAND" else None
            hint = f" (did you mean '{alias}'?)" if alias in choices else suggest(bad, choices)
            if what == "COMMAND":
                message = f"unknown command '{bad}'{hint}; commands: {', '.join(choices)} (see '{self.prog} --help')"
            else:
                message = f"argument {what}: invalid choice '{bad}'{hint}; choose from {', '.join(choices)}"
        self.exit(2, f"{self.prog}: error: {message}\n")


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``, ``1 process``, ``4 processes``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def version() -> str:
    """The installed distribution's version, else the source tree's ``simvae.__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("simvae")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def _show_default(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_default(help_: str, name: str, default) -> str:
    """``help_`` with its default appended once, unless the text already states it."""
    if "default" in help_.lower():
        return help_
    if default is None:
        return f"{help_} (default: {UNSET_MEANS[name]})" if name in UNSET_MEANS else help_
    return f"{help_} (default: {_show_default(default)})"


def _method_names() -> list[str]:
    from .methods import method_names

    return method_names()


def _method_option_table() -> dict[str, dict]:
    from .run_config import method_option_table

    return method_option_table()


def _add_config_fields(parser, cls, skip=(), group_title: str | None = None):
    group = parser.add_argument_group(group_title) if group_title else parser
    for name, f in cls.model_fields.items():
        if name in skip:
            continue
        default = f.get_default(call_default_factory=True)
        help_ = _with_default(f.description or "", name, None if default == [] else default)
        if name == "skip":  # the registered evaluators, whatever modules registered them
            from .evaluate import evaluator_names

            help_ = f"evaluators to leave out, comma-separated: {', '.join(evaluator_names())} (default: none)"
        if f.annotation is bool:
            group.add_argument(_opt(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            group.add_argument(_opt(name), dest=name, default=None, metavar=name.upper().replace("_", "-"), help=help_)


def build_parser() -> argparse.ArgumentParser:
    from .run_config import EvalConfig, TrainConfig

    p = OneLineParser(
        prog="simvae",
        allow_abbrev=False,
        description="Generative self-supervised representation learning (SimVAE) with fair baselines and evaluation.",
    )
    p.add_argument("--version", action="version", version=f"simvae {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    p.set_defaults(command=None)

    t = sub.add_parser(
        "train",
        allow_abbrev=False,
        help="train a method and (by default) evaluate it",
        description="Train a method; then evaluate it and write the report (unless --no-eval). "
        "With no options: SimVAE on Fashion-MNIST for a short budget.",
    )
    t.add_argument("--out", metavar="RUN_DIR", help="run folder (default: runs/DATASET-METHOD-TIME)")
    t.add_argument("--config", metavar="FILE", help="JSON config with sections train, method, eval (options override it)")
    t.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint; with --epochs N, extend a finished run to N epochs",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --out (reusing its own config unless options or --config are given)",
    )
    t.add_argument(
        "--quick-eval",
        action="store_true",
        help="the quick evaluation preset for short runs (10k training images, short probes, 1 GMM restart)",
    )
    t.add_argument("--no-eval", action="store_true", help="train only; run 'simvae evaluate RUN_DIR' later")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_fields(t, TrainConfig, group_title="training")
    # each method's options in a section of its own; an option several methods share is listed
    # under the first of them (its help names the others and their defaults)
    from .methods import METHODS, RENAMED_OPTIONS

    table = _method_option_table()
    old_names = {new: old for old, new in RENAMED_OPTIONS.items()}
    for mname in _method_names():
        fields = list(METHODS[mname].config_cls.model_fields)
        own = [n for n in fields if table[n]["first"] == mname]
        shared = [n for n in fields if table[n]["first"] != mname]
        desc = ("also takes " + ", ".join(_opt(n) for n in shared) + " (listed above)") if shared else None
        if not fields:
            desc = "no options"
        mg = t.add_argument_group(f"{mname} options", desc)
        for name in own:
            entry = table[name]
            if len(entry["methods"]) > 1:
                defaults = ", ".join(f"{m} {_show_default(d)}" for m, d in entry["defaults"].items())
            else:
                defaults = entry["defaults"][mname]
            flags = [_opt(name)] + ([_opt(old_names[name])] if name in old_names else [])
            mg.add_argument(
                *flags,
                dest=f"m_{name}",
                default=None,
                metavar=name.upper().replace("_", "-"),
                help=_with_default(entry["help"], name, defaults)
                + (f" [{_opt(old_names[name])}: deprecated spelling]" if name in old_names else ""),
            )
    _add_config_fields(
        t, EvalConfig, skip={"device", "seed", "quick"}, group_title="evaluation (after training; --seed here is the training seed)"
    )

    e = sub.add_parser("evaluate", allow_abbrev=False, help="evaluate a run: k-NN, probes, GMM; metrics.json and report")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--quiet", action="store_true", help="no progress messages")
    e.add_argument(
        "--threads", type=int, default=None, metavar="N", help="CPU threads (default: one per core that other processes leave free)"
    )
    how = e.add_mutually_exclusive_group()
    how.add_argument(
        "--quick-eval",
        action="store_true",
        help="the quick evaluation preset (10k training images, short probes, 1 GMM restart), kept as eval/quick*/",
    )
    how.add_argument("--full-eval", action="store_true", help="the full protocol, also for a run trained with --quick-eval")
    _add_config_fields(e, EvalConfig, skip={"quick"}, group_title="evaluation")

    c = sub.add_parser("compare", allow_abbrev=False, help="one table and one reconstruction figure across runs")
    c.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    c.add_argument("--out", metavar="DIR", default="comparison", help="folder for comparison.md, .csv and .png (default: comparison)")
    c.add_argument("--overwrite", action="store_true", help="replace the files of an earlier comparison in --out")

    sub.add_parser("methods", help="describe the methods and their options")

    m = sub.add_parser(
        "embed",
        allow_abbrev=False,
        help="write the representation of every image of a folder",
        description="Encode every image found in --data-dir with a trained run and write the "
        "representations: FILE.npy (float32 [N, d] posterior means), FILE.paths.txt (the "
        "image of each row), FILE.var.npy (posterior variances, generative methods); or "
        "FILE.parquet (columns path, label, mean, var).",
    )
    m.add_argument("run_dir", metavar="RUN_DIR")
    m.add_argument("--data-dir", metavar="DIR", help="the images (default: the run's own data folder)")
    m.add_argument("--dataset", metavar="NAME", help="how to read DIR (default: the run's data set, e.g. folder)")
    m.add_argument("--out", metavar="FILE", required=True, help="FILE[.npy] or FILE.parquet")
    m.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="image folders: convert the images to 1 (grey) or 3 (colour) channels (default: as found; must match the run)",
    )
    m.add_argument("--strict", action="store_true", help="image folders: stop on an unreadable image instead of listing and skipping it")
    m.add_argument("--batch-size", type=int, default=1024, metavar="B", help="images per batch (default: 1024)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto, the GPU when there is one)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_grid_parsers(sub)
    return p


def _add_grid_options(g) -> None:
    """The options ``reproduce`` and ``sweep`` share (the grid's runs, how they run)."""
    g.add_argument("--dataset", default="fashion-mnist", help="data set (default: fashion-mnist)")
    g.add_argument("--seeds", default="3", help="a count (3: seeds 0, 1, 2) or a comma-separated list (0,4,7) (default: 3)")
    g.add_argument("--epochs", type=int, default=2, help="training epochs of every run (the paper: 400) (default: 2)")
    g.add_argument("--out", required=True, metavar="DIR", help="grid folder: runs in DIR/runs, logs in DIR/logs, tables and report in DIR")
    g.add_argument("--train-subset", default=None, metavar="N", help="train on the first N training images only")
    g.add_argument("--quick-eval", action="store_true", help="the quick evaluation preset for every run")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a config value for every run (train.lr=3e-4, method.beta=0.05, eval.gmm_restarts=3); any other "
        "'simvae train' option (--lr 3e-4, --gmm-restarts 3, --data-dir DIR) is passed to every run too",
    )
    g.add_argument("--jobs", type=int, default=1, help="runs at once, each with cores // jobs threads (default: 1)")
    g.add_argument("--threads", type=int, default=None, help="threads per run (default: cores // jobs, at least 1)")
    g.add_argument("--retries", type=int, default=1, help="times a failed run is retried from where it stands (default: 1)")
    g.add_argument(
        "--no-estimate", action="store_true", help="no timed probe before starting (the estimate then comes from the runs already done)"
    )
    g.add_argument("--dry-run", action="store_true", help="print the plan and its time estimate, then stop")
    g.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local subprocesses, or one slurm job per run through submitit (default: local)",
    )
    g.add_argument("--gpus-per-run", type=int, default=None, help="slurm: GPUs per job")
    g.add_argument("--partition", default=None, help="slurm: partition")
    g.add_argument("--time", type=int, default=None, metavar="MINUTES", help="slurm: time limit of each job (default: 1440)")


def _add_grid_parsers(sub) -> None:
    r = sub.add_parser(
        "reproduce",
        allow_abbrev=False,
        help="train and evaluate methods x seeds; the paper's tables, claims and an HTML report",
        description="Train and evaluate every method for every seed (each run one 'simvae train' "
        "subprocess in DIR/runs/METHOD-sSEED), then write the paper's tables (table1, 5, 6, 7, "
        "style: .md and .csv), claims.md and report.html into DIR. Run again, it skips what is "
        "done, resumes what was interrupted and evaluates what is trained.",
    )
    r.add_argument("--methods", default="all", help="comma-separated methods, or all (default: all)")
    r.add_argument(
        "--epochs-for",
        nargs="+",
        default=[],
        metavar="METHOD=N",
        help="other epochs for some methods (simclr=5 vae=11); the rest train --epochs",
    )
    _add_grid_options(r)
    s = sub.add_parser(
        "sweep",
        allow_abbrev=False,
        help="train and evaluate one config value at several settings",
        description="Train and evaluate methods x values x seeds (each run one 'simvae train' subprocess), "
        "then write sweep.md, sweep.csv and one plot per validation metric into DIR.",
    )
    s.add_argument("--method", required=True, help="method(s), comma-separated")
    s.add_argument("--param", required=True, metavar="SECTION.KEY", help="the value swept: train.lr, method.n_views, ...")
    s.add_argument("--values", nargs="+", required=True, help="the values to try")
    _add_grid_options(s)
    rp = sub.add_parser("report", allow_abbrev=False, help="one self-contained HTML report of a grid, sweep or run folder")
    rp.add_argument("folder", metavar="DIR")
    rp.add_argument("--out", metavar="FILE", default=None, help="the HTML file (default: DIR/report.html)")


def _collect(args, cls, prefix: str = "", text: bool = False) -> dict:
    """The options of config ``cls`` given on the command line: their text (``text``), else converted
    to their types."""
    from .config import from_text

    out = {}
    for name in cls.model_fields:
        v = getattr(args, prefix + name, None)
        if v is not None:
            out[name] = v if text or not isinstance(v, str) else from_text(cls, name, v)
    return out


def cmd_train(args) -> int:
    from .run_config import EvalConfig, TrainConfig, assemble_run_config, load_config_file
    from .train import resume_run_config, train

    train_opts = _collect(args, TrainConfig, text=True)
    eval_opts = {k: v for k, v in _collect(args, EvalConfig, text=True).items() if k not in ("seed", "device")}
    if args.quick_eval:
        eval_opts["quick"] = "true"
    method_opts = {k[2:]: v for k, v in vars(args).items() if k.startswith("m_") and v is not None}
    main_process = int(os.environ.get("RANK", "0")) == 0
    if args.resume:
        if args.config or args.out or args.overwrite:
            given = [o for o, v in (("--config", args.config), ("--out", args.out), ("--overwrite", args.overwrite)) if v]
            raise SimvaeError(f"--resume continues the run in its own folder with its own config; drop {', '.join(given)}")
        out = Path(args.resume)
        args.run_dir = out
        run, message = resume_run_config(out, train_opts, method_opts, eval_opts, text=True, main_process=main_process)
        if message is not None and run is None:
            print(message, file=sys.stderr)
            return 0
        if message and main_process:
            print(message, file=sys.stderr)
    else:
        base = load_config_file(args.config) if args.config else {}
        where = f"config file {args.config}" if args.config else "options"
        if (
            args.overwrite
            and args.out
            and not (args.config or train_opts or eval_opts or method_opts)
            and (Path(args.out) / "config.json").is_file()
        ):
            base = load_config_file(Path(args.out) / "config.json")  # --overwrite alone: the folder's own run
            where = str(Path(args.out) / "config.json")
            if main_process:
                print(f"--overwrite: training {args.out} again with its own config.json", file=sys.stderr)
        run = assemble_run_config(base, train_opts, method_opts, eval_opts, text=True, where=where)
        out = Path(args.out) if args.out else Path("runs") / f"{run.train.dataset}-{run.train.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    args.run_dir = out  # the folder named by the Ctrl-C hint in main()
    for note in getattr(args, "notes", []):
        print(note, file=sys.stderr)
    from .pipeline import check_evaluators

    check_evaluators(run.eval)

    def on_start(trainer) -> None:
        args.training_started = True  # a failure from here on keeps a resumable run (main's hint)
        if not args.quiet:
            _startup_line(trainer)

    summary = train(run, out, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.quiet, on_start=on_start)
    args.trained = True
    if not main_process:
        return 0
    print(
        f"trained {summary['method']} on {summary['dataset']}: {plural(summary['epochs'], 'epoch')} in "
        f"{summary['train_seconds']:.1f} s ({summary['train_views_per_s']:.0f} views/s); run folder {out}",
        file=sys.stderr,
    )
    if not args.no_eval:
        _barrier_cleanup()
        from .pipeline import evaluate_and_report

        evaluation = evaluate_and_report(out, quiet=args.quiet)
        _print_metrics(evaluation, out)
    return 0


def _startup_line(trainer) -> None:
    """One line before training: device, threads, data, run folder, steps, and a time estimate."""
    import torch

    if not trainer.dist.main:
        return
    tc = trainer.run.train
    steps = trainer.steps_per_epoch * tc.epochs - trainer.step
    print(
        f"simvae: {tc.method} on {tc.dataset} ({len(trainer.data.train_images)} training images from "
        f"{trainer.data.source}); {trainer.device} x {plural(trainer.dist.world, 'process', 'processes')}, "
        f"{plural(torch.get_num_threads(), 'thread')} ({trainer.thread_choice.reason}), {trainer.precision}; {plural(steps, 'step')} of "
        f"{_step_composition(trainer)} ({plural(tc.epochs, 'epoch')}); run folder {trainer.out}",
        file=sys.stderr,
        flush=True,
    )


def _step_composition(trainer) -> str:
    """'12 images x 10 views = 120 views (the paper's 128 samples per step, rounded down to whole images)'."""
    tc, ips, vps = trainer.run.train, trainer.images_per_step, trainer.views_per_step
    text = f"{plural(ips, 'image')} x {plural(vps // ips, 'view')} = {plural(vps, 'view')}"
    if tc.views_per_step is not None and vps != tc.views_per_step:
        text += f" (--views-per-step {tc.views_per_step}, rounded down to whole images)"
    note = getattr(trainer.source, "describe", None)  # listed groups: how many are drawn with replacement
    return text + (f"; {note(trainer.method.n_views)}" if callable(note) else "")


def _barrier_cleanup() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _print_metrics(metrics: dict, out: Path) -> None:
    from .evaluate.registry import headline_keys

    keys = headline_keys() + ["knn_k"]
    print("  ".join(f"{k}={metrics[k]:.4f}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}" for k in keys if k in metrics))
    print(f"metrics: {out / 'metrics.json'}  report: {out / 'report.md'}")


def cmd_evaluate(args) -> int:
    from .hardware import configure_threads
    from .pipeline import evaluate_and_report
    from .run_config import EvalConfig

    if args.threads is not None and args.threads < 1:
        raise SimvaeError(f"--threads must be at least 1, got {args.threads}; leave it out for one per free core")
    # as for training: a thread per core that other processes leave free, so that an evaluation
    # beside another job does not wait on a descheduled thread (simvae.hardware)
    configure_threads(args.threads, revised=False)
    metrics = evaluate_and_report(
        Path(args.run_dir),
        overrides=_collect(args, EvalConfig),
        quiet=args.quiet,
        quick=True if args.quick_eval else False if args.full_eval else None,
    )
    _print_metrics(metrics, Path(args.run_dir))
    return 0


def cmd_compare(args) -> int:
    from .report.compare import compare_runs

    out = Path(args.out)
    paths = compare_runs([Path(p) for p in args.run_dirs], out, overwrite=args.overwrite)
    print(f"comparison written to {out}: {', '.join(Path(p).name for p in paths)}")
    return 0


def cmd_embed(args) -> int:
    from .embed import embed_images

    done = embed_images(
        args.run_dir,
        args.out,
        data_dir=args.data_dir,
        dataset=args.dataset,
        device=args.device,
        batch_size=args.batch_size,
        channels=args.channels,
        strict=args.strict,
        progress=False if args.quiet else None,
    )
    print(
        f"embedded {done['n']} images ({done['dim']} dimensions{', with variances' if done['variances'] else ''}) "
        f"from {done['source']} on {done['device']}: {', '.join(done['files'])}",
        file=sys.stderr,
    )
    return 0


def cmd_methods(args) -> int:
    from .methods import METHODS

    width = min(100, shutil.get_terminal_size().columns)
    for name in _method_names():
        cls = METHODS[name]
        doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        about = " ".join(doc.split("\n\n")[0].split())  # the first paragraph, whatever its line breaks
        print(textwrap.fill(f"{name}: {about}", width, subsequent_indent="    "))
        lr = (
            f"Adam learning rate (default: {_show_default(cls.default_lr)}"
            + "".join(f"; {d} {_show_default(v)}" for d, v in sorted(cls.default_lr_by_dataset.items()))
            + ")"
        )
        rows = [("--lr", lr)] + [
            (_opt(n), _with_default(f.description or "", n, f.default)) for n, f in cls.config_cls.model_fields.items()
        ]
        for opt, help_ in rows:
            print(textwrap.fill(help_, width, initial_indent=f"    {opt:24s}", subsequent_indent=" " * 28))
        print()
    return 0


def _grid_resolver():
    """A function (train options, evaluate options) -> (RunConfig, EvalConfig): what 'simvae train
    ARGS' would run and which settings 'simvae evaluate RUN ARGS' would evaluate it with."""
    from types import SimpleNamespace

    from .errors import ConfigError
    from .evaluate import eval_config_for
    from .run_config import EvalConfig, TrainConfig, assemble_run_config, load_config_file

    parser = build_parser()
    train_opts_seen = {o for a in parser._subparsers._group_actions[0].choices["train"]._actions for o in a.option_strings}

    def resolve(train_argv: list[str], eval_argv: list[str]):
        args, extra = parser.parse_known_args(["train", *train_argv])
        if extra:
            first = next((x for x in extra if x.startswith("-")), extra[0])
            raise ConfigError(
                f"unrecognized option {first}{suggest(first.split('=')[0], train_opts_seen)} (not an option of 'simvae train')"
            )
        grid_owned = [
            o
            for o, v in (("--resume", args.resume), ("--out", args.out), ("--overwrite", args.overwrite), ("--no-eval", args.no_eval))
            if v
        ]
        if grid_owned:
            raise ConfigError(
                f"{', '.join(grid_owned)} cannot be given to a grid: it chooses each run's folder and resumes interrupted runs itself"
            )
        train_opts = _collect(args, TrainConfig, text=True)
        eval_opts = {k: v for k, v in _collect(args, EvalConfig, text=True).items() if k not in ("seed", "device")}
        if args.quick_eval:
            eval_opts["quick"] = "true"
        method_opts = {k[2:]: v for k, v in vars(args).items() if k.startswith("m_") and v is not None}
        base = load_config_file(args.config) if args.config else {}
        run = assemble_run_config(base, train_opts, method_opts, eval_opts, text=True, where="options")
        eargs = parser.parse_args(["evaluate", "RUN", *eval_argv])
        cfg = eval_config_for(SimpleNamespace(config=run), _collect(eargs, EvalConfig), True if eargs.quick_eval else None)
        return run, cfg

    return resolve


def _grid_common(args, extra: list[str]) -> list[str]:
    from .grid import set_to_args

    common = list(extra) + set_to_args(args.set)
    if args.train_subset is not None:
        common += ["--train-subset", str(args.train_subset)]
    if args.quick_eval:
        common.append("--quick-eval")
    return common


def _run_grid_command(args, grid) -> int:
    from .grid import run_grid
    from .report.html import write_html_report

    if args.jobs < 1 or (args.threads is not None and args.threads < 1) or args.retries < 0:
        raise SimvaeError("--jobs and --threads must be at least 1, --retries at least 0")
    slurm = {"partition": args.partition, "time": args.time, "gpus_per_run": args.gpus_per_run}
    if args.dry_run:
        run_grid(grid, jobs=args.jobs, threads=args.threads, launcher="dry-run", estimate=not args.no_estimate)
        return 0
    results = run_grid(
        grid, jobs=args.jobs, threads=args.threads, launcher=args.launcher, retries=args.retries, estimate=not args.no_estimate, slurm=slurm
    )
    written = grid.write_outputs()
    html = write_html_report(grid.out)
    print(f"{grid.kind} written to {grid.out}: {', '.join(p.name for p in written + [html])}")
    failed = [r for r in results if not r["ok"]]
    if failed:
        print(
            f"simvae: {len(failed)} run(s) failed ({', '.join(r['name'] for r in failed)}); see {grid.out / 'logs'}; "
            "run the same command again to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_reproduce(args) -> int:
    from .grid import make_grid, parse_epochs_for, parse_methods, parse_seeds

    methods = parse_methods(args.methods, _method_names())
    grid = make_grid(
        "reproduce",
        Path(args.out),
        args.dataset,
        methods,
        parse_seeds(args.seeds),
        args.epochs,
        parse_epochs_for(args.epochs_for, methods),
        _grid_common(args, getattr(args, "passthrough", [])),
        _grid_resolver(),
        command=["simvae", *sys.argv[1:]],
        quick=args.quick_eval,
        train_subset=args.train_subset,
    )
    return _run_grid_command(args, grid)


def cmd_sweep(args) -> int:
    from .grid import make_grid, parse_methods, parse_seeds

    methods = parse_methods(args.method, _method_names())
    grid = make_grid(
        "sweep",
        Path(args.out),
        args.dataset,
        methods,
        parse_seeds(args.seeds),
        args.epochs,
        {},
        _grid_common(args, getattr(args, "passthrough", [])),
        _grid_resolver(),
        command=["simvae", *sys.argv[1:]],
        quick=args.quick_eval,
        train_subset=args.train_subset,
        param=args.param,
        values=args.values,
    )
    return _run_grid_command(args, grid)


def cmd_report(args) -> int:
    from .report.html import write_html_report

    path = write_html_report(Path(args.folder), args.out)
    print(f"report written to {path}")
    return 0


def _interrupted_hint(args) -> str:  # noqa: C901
    """What to do after Ctrl-C in ``simvae train``, naming the run folder (auto-named or not)."""
    from .checkpoint import CHECKPOINT_NAME

    run = getattr(args, "run_dir", None)
    if run is None:
        return ""
    if getattr(args, "trained", False):
        return f"; training finished, evaluate with 'simvae evaluate {run}'"
    if (run / CHECKPOINT_NAME).is_file():
        return f"; continue with 'simvae train --resume {run}'"
    return f"; {run} has no checkpoint yet: start the run again (with --out {run} --overwrite to reuse that folder)"


def _with_resume_hint(e: SimvaeError, args) -> str:
    """The error's line; for a run folder that failed (a failed write: full disk, ...) once training had
    started, with what continues the run (``_interrupted_hint``) instead of "run the command again",
    which a run folder that holds a run refuses."""
    from .errors import RunDirError

    message = str(e)
    if args.command != "train" or not getattr(args, "training_started", False) or not isinstance(e, RunDirError):
        return message
    hint = _interrupted_hint(args)
    if hint:
        message = message.removesuffix(" and run the command again")
    return message + hint


# What a collective reports when another process of a distributed run died (gloo, NCCL, the store)
PEER_FAILURE = re.compile(
    r"connection (closed|reset|refused)|closed by peer|broken pipe|remote process|"
    r"process group|gloo|nccl|socket|timed out|timeout|store",
    re.IGNORECASE,
)


def _distributed_failure(e: RuntimeError, args) -> str | None:
    """One line for an error of a distributed run caused by another process dying (a collective that
    lost its peer): which process saw it and how to continue. None for any other RuntimeError (a
    programming error keeps its traceback)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world < 2:
        return None
    dist = sys.modules.get("torch.distributed")
    dist_error = getattr(dist, "DistError", None) if dist is not None else None
    text = str(e).strip()
    if not ((dist_error is not None and isinstance(e, dist_error)) or PEER_FAILURE.search(text)):
        return None
    first = (text.splitlines()[0] if text else type(e).__name__)[:200]
    rank = os.environ.get("RANK", "?")
    hint = ""
    if args.command == "train":
        hint = _interrupted_hint(args)
        if hint.startswith("; continue with "):  # under torchrun, the same launcher continues it
            hint = hint.replace("; continue with ", "; continue with the same torchrun command and ", 1)
    return f"simvae: error: process {rank} of {world}: another process of this distributed run stopped ({type(e).__name__}: {first}){hint}"


def main(argv: list[str] | None = None) -> int:
    from .hardware import openmp_wait_policy

    openmp_wait_policy()  # before torch is imported: idle OpenMP threads sleep instead of spinning on a shared machine
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command in ("reproduce", "sweep"):  # 'simvae train' options for every run of the grid
        args.passthrough, extra = extra, []
    if extra:
        sub = parser._subparsers._group_actions[0].choices.get(args.command) if args.command else None
        target = sub or parser
        target.error("unrecognized arguments: " + " ".join(extra))
    if args.command is None:
        parser.print_help()
        return 2
    from .methods import RENAMED_OPTIONS

    given = argv if argv is not None else sys.argv[1:]
    # printed once the options are known to be valid (a refused command line stays one line)
    args.notes = [
        f"simvae: note: {_opt(old)} is now {_opt(new)} (the old spelling works until the next release)"
        for old, new in RENAMED_OPTIONS.items()
        if any(a == _opt(old) or a.startswith(_opt(old) + "=") for a in given)
    ]
    try:
        return {
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "compare": cmd_compare,
            "methods": cmd_methods,
            "embed": cmd_embed,
            "reproduce": cmd_reproduce,
            "sweep": cmd_sweep,
            "report": cmd_report,
        }[args.command](args)
    except SimvaeError as e:
        print(f"simvae: error: {_with_resume_hint(e, args)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        hint = _interrupted_hint(args) if args.command == "train" else ""
        print(f"simvae: interrupted{hint}", file=sys.stderr)
        return 130
    except RuntimeError as e:  # torch.distributed's errors (DistBackendError, ...) are RuntimeErrors
        line = _distributed_failure(e, args)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
