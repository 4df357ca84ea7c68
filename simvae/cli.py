"""The ``simvae`` command: thin over the Python API (train, evaluate, compare).

Every option is validated before any work starts; a user error prints one line to
stderr (with the closest valid name where there is one) and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
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


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are one line, name the command, and suggest the closest option."""

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            bad = message.split(":", 1)[1].split()
            if not bad:
                self.exit(2, f"{self.prog}: error: unrecognized empty argument; see '{self.prog} --help'\n")
            opts = [o for a in self._actions for o in a.option_strings]
            first = next((b for b in bad if b.startswith("-")), bad[0])
            hint = suggest(first.split("=")[0], opts)
            message = f"unrecognized option {first}{hint}; see '{self.prog} --help'"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def version() -> str:
    """The installed distribution's version, else the source tree's ``simvae.__version__``."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

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


METHOD_ORDER = ("simvae", "vae", "beta-vae", "cr-vae", "simclr", "moco", "mocov2", "vicreg", "random")


def _method_names() -> list[str]:
    from .methods import METHODS

    return [m for m in METHOD_ORDER if m in METHODS] + sorted(m for m in METHODS if m not in METHOD_ORDER)


def _method_option_table() -> dict[str, dict]:
    """option name -> {help, methods that take it, defaults}, over every registered method."""
    from .methods import METHODS

    table: dict[str, dict] = {}
    for mname in _method_names():
        for name, f in METHODS[mname].config_cls.model_fields.items():
            entry = table.setdefault(name, {"help": f.description or "", "methods": [], "defaults": {}, "first": mname})
            entry["methods"].append(mname)
            entry["defaults"][mname] = f.default
    return table


def _add_config_fields(parser, cls, skip=(), group_title: str | None = None):
    group = parser.add_argument_group(group_title) if group_title else parser
    for name, f in cls.model_fields.items():
        if name in skip:
            continue
        default = f.get_default(call_default_factory=True)
        help_ = _with_default(f.description or "", name, None if default == [] else default)
        if f.annotation is bool:
            group.add_argument(_opt(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            group.add_argument(_opt(name), dest=name, default=None, metavar=name.upper().replace("_", "-"), help=help_)


def build_parser() -> argparse.ArgumentParser:
    from .run_config import EvalConfig, TrainConfig

    p = OneLineParser(prog="simvae", allow_abbrev=False,
                      description="Generative self-supervised representation learning (SimVAE) with fair baselines "
                                  "and evaluation.")
    p.add_argument("--version", action="version", version=f"simvae {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    p.set_defaults(command=None)

    t = sub.add_parser("train", allow_abbrev=False, help="train a method and (by default) evaluate it",
                       description="Train a method; then evaluate it and write the report (unless --no-eval). "
                                   "With no options: SimVAE on Fashion-MNIST for a short budget.")
    t.add_argument("--out", metavar="RUN_DIR", help="run folder (default: runs/DATASET-METHOD-TIME)")
    t.add_argument("--config", metavar="FILE", help="JSON config with sections train, method, eval (options override it)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint; "
                                                       "with --epochs N, extend a finished run to N epochs")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out (reusing its own config "
                                                            "unless options or --config are given)")
    t.add_argument("--quick-eval", action="store_true", help="the quick evaluation preset for short runs "
                                                             "(10k training images, short probes, 1 GMM restart)")
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
            mg.add_argument(*flags, dest=f"m_{name}", default=None, metavar=name.upper().replace("_", "-"),
                            help=_with_default(entry["help"], name, defaults)
                            + (f" [{_opt(old_names[name])}: deprecated spelling]" if name in old_names else ""))
    _add_config_fields(t, EvalConfig, skip={"device", "seed"}, group_title="evaluation (after training; --seed here is the training seed)")

    e = sub.add_parser("evaluate", allow_abbrev=False, help="evaluate a run: k-NN, probes, GMM; metrics.json and report")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--quiet", action="store_true", help="no progress messages")
    e.add_argument("--quick-eval", action="store_true", help="the quick evaluation preset (10k training images, "
                                                             "short probes, 1 GMM restart)")
    _add_config_fields(e, EvalConfig, group_title="evaluation")

    c = sub.add_parser("compare", allow_abbrev=False, help="one table and one reconstruction figure across runs")
    c.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    c.add_argument("--out", metavar="DIR", default="comparison",
                   help="folder for comparison.md, .csv and .png (default: comparison)")
    c.add_argument("--overwrite", action="store_true", help="replace the files of an earlier comparison in --out")

    sub.add_parser("methods", help="describe the methods and their options")
    return p


def _collect(args, cls, prefix: str = "") -> dict:
    """The options of config ``cls`` given on the command line, converted from text to their types."""
    from .config import from_text

    out = {}
    for name in cls.model_fields:
        v = getattr(args, prefix + name, None)
        if v is not None:
            out[name] = from_text(cls, name, v)
    return out


def cmd_train(args) -> int:
    from .run_config import EvalConfig, TrainConfig, build_run_config, load_config_file
    from .train import extend_run, load_run_config, run_state, train

    train_opts = _collect(args, TrainConfig)
    eval_opts = {k: v for k, v in _collect(args, EvalConfig).items() if k not in ("seed", "device")}
    method_opts = {k[2:]: v for k, v in vars(args).items() if k.startswith("m_") and v is not None}
    main_process = int(os.environ.get("RANK", "0")) == 0
    if args.resume:
        extend = train_opts.pop("epochs", None)
        given = [_opt(k) for k in {**train_opts, **eval_opts, **method_opts}] + (["--config"] if args.config else [])
        if given or args.out or args.overwrite:
            raise SimvaeError(f"--resume takes the run's own config (only --epochs may extend it); drop "
                              f"{', '.join(given + (['--out'] if args.out else []) + (['--overwrite'] if args.overwrite else []))}")
        out = Path(args.resume)
        args.run_dir = out
        run = load_run_config(out)
        if (out / "checkpoint.pt").is_file():
            state = run_state(out)
            if extend is not None:
                run = extend_run(out, int(extend)) if main_process else load_run_config(out)
            elif state["finished"]:
                print(f"{out} is finished ({state['epoch']} of {state['epochs_planned']} epochs, step {state['step']}): "
                      f"nothing to resume. Extend it with 'simvae train --resume {out} --epochs N', or evaluate it with "
                      f"'simvae evaluate {out}'", file=sys.stderr)
                return 0
            if main_process:
                where = f"epoch {state['epoch']}" + (f" + {state['epoch_step']} steps" if state["epoch_step"] else "")
                print(f"resuming {out} from {where} (step {state['step']}) of {run.train.epochs} epochs", file=sys.stderr)
    else:
        values = load_config_file(args.config) if args.config else {}
        if not isinstance(values, dict):
            raise SimvaeError(f"config file {args.config} must hold a JSON object")
        if args.overwrite and args.out and not (args.config or train_opts or eval_opts or method_opts) \
                and (Path(args.out) / "config.json").is_file():
            values = json.loads((Path(args.out) / "config.json").read_text())  # --overwrite alone: the folder's own run
            if main_process:
                print(f"--overwrite: training {args.out} again with its own config.json", file=sys.stderr)
        values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
        for section, opts in (("train", train_opts), ("eval", eval_opts)):
            if opts:
                if not isinstance(values.get(section, {}), dict):
                    raise SimvaeError(f"section '{section}' of {args.config} must be a JSON object")
                values.setdefault(section, {}).update(opts)
        if method_opts:
            from .config import from_text
            from .methods import METHODS

            method = values.get("train", {}).get("method", "simvae") if isinstance(values.get("train"), dict) else "simvae"
            table = _method_option_table()
            for k in method_opts:
                if k in table and method not in table[k]["methods"]:
                    raise SimvaeError(f"option {_opt(k)} does not apply to method '{method}' "
                                      f"(it applies to {', '.join(table[k]['methods'])})")
            if method in METHODS:
                method_opts = {k: from_text(METHODS[method].config_cls, k, v) for k, v in method_opts.items()}
            if not isinstance(values.get("method", {}), dict):
                raise SimvaeError(f"section 'method' of {args.config} must be a JSON object")
            values.setdefault("method", {}).update(method_opts)
        run = build_run_config(values, where=f"config file {args.config}" if args.config else "options")
        out = Path(args.out) if args.out else Path("runs") / f"{run.train.dataset}-{run.train.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    args.run_dir = out  # the folder named by the Ctrl-C hint in main()
    for note in getattr(args, "notes", []):
        print(note, file=sys.stderr)
    summary = train(run, out, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.quiet,
                    on_start=None if args.quiet else _startup_line)
    args.trained = True
    if not main_process:
        return 0
    print(f"trained {summary['method']} on {summary['dataset']}: {summary['epochs']} epochs in "
          f"{summary['train_seconds']:.1f} s ({summary['train_views_per_s']:.0f} views/s); run folder {out}", file=sys.stderr)
    if not args.no_eval:
        _barrier_cleanup()
        from .pipeline import evaluate_and_report

        metrics = evaluate_and_report(out, quiet=args.quiet, quick=args.quick_eval)
        _print_metrics(metrics, out)
    return 0


def _startup_line(trainer) -> None:
    """One line before training: device, threads, data, run folder, steps, and a time estimate."""
    import torch

    if not trainer.dist.main:
        return
    tc = trainer.run.train
    steps = trainer.steps_per_epoch * tc.epochs - trainer.step
    print(f"simvae: {tc.method} on {tc.dataset} ({len(trainer.data.train_images)} training images from "
          f"{trainer.data.source}); {trainer.device} x {trainer.dist.world} process(es), {torch.get_num_threads()} threads, "
          f"{trainer.precision}; {steps} steps of {trainer.images_per_step} images x {trainer.method.n_views} views "
          f"({tc.epochs} epochs); run folder {trainer.out}", file=sys.stderr, flush=True)


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
    from .pipeline import evaluate_and_report
    from .run_config import EvalConfig

    metrics = evaluate_and_report(Path(args.run_dir), overrides=_collect(args, EvalConfig), quiet=args.quiet,
                                  quick=args.quick_eval)
    _print_metrics(metrics, Path(args.run_dir))
    return 0


def cmd_compare(args) -> int:
    from .report.compare import compare_runs

    out = Path(args.out)
    paths = compare_runs([Path(p) for p in args.run_dirs], out, overwrite=args.overwrite)
    print(f"comparison written to {out}: {', '.join(Path(p).name for p in paths)}")
    return 0


def cmd_methods(args) -> int:
    from .methods import METHODS

    width = min(100, shutil.get_terminal_size().columns)
    for name in _method_names():
        cls = METHODS[name]
        doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        about = " ".join(doc.split("\n\n")[0].split())  # the first paragraph, whatever its line breaks
        print(textwrap.fill(f"{name}: {about}", width, subsequent_indent="    "))
        lr = f"Adam learning rate (default: {_show_default(cls.default_lr)}" + "".join(
            f"; {d} {_show_default(v)}" for d, v in sorted(cls.default_lr_by_dataset.items())) + ")"
        rows = [("--lr", lr)] + [(_opt(n), _with_default(f.description or "", n, f.default))
                                  for n, f in cls.config_cls.model_fields.items()]
        for opt, help_ in rows:
            print(textwrap.fill(help_, width, initial_indent=f"    {opt:24s}", subsequent_indent=" " * 28))
        print()
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
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
    args.notes = [f"simvae: note: {_opt(old)} is now {_opt(new)} (the old spelling works until the next release)"
                  for old, new in RENAMED_OPTIONS.items()
                  if any(a == _opt(old) or a.startswith(_opt(old) + "=") for a in given)]
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "compare": cmd_compare, "methods": cmd_methods}[args.command](args)
    except SimvaeError as e:
        print(f"simvae: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        hint = _interrupted_hint(args) if args.command == "train" else ""
        print(f"simvae: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
