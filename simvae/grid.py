"""A grid of runs (methods x seeds, or a swept value x methods x seeds): planned, run, resumed, reported.

``simvae reproduce`` and ``simvae sweep`` build a ``Grid`` of ``GridRun`` s, each one run folder
``OUT/runs/NAME`` trained and evaluated by the ordinary commands in a subprocess of its own:

    simvae train --out OUT/runs/NAME --no-eval ...   (a new run)
    simvae train --resume OUT/runs/NAME --no-eval    (an interrupted one, from its last checkpoint)
    simvae evaluate OUT/runs/NAME ...                (a trained one)

Run again, a grid picks up where it stopped: a run evaluated with the settings asked for
(``RUN/eval/NAME/metrics.json`` of a finished model) is skipped, an interrupted one resumed, a
trained one evaluated; a run that fails is retried once from where it stands, then reported. A
folder that holds a different experiment is refused before anything starts. The grid folder is
locked (``RunLock``) while a grid works in it; each run folder is locked by its own command.

Runs go through ``concurrent.futures`` (``--jobs K`` at once, each with ``max(1, cores // K)``
threads) or, with ``--launcher slurm``, through submitit (one job per run). Child processes get
SIGTERM when the grid dies (Linux), so a killed grid leaves checkpoints, not stray runs.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ConfigError, RunDirError, SimvaeError
from .report.tables import GRID_FILE  # noqa: E402 - the grid folder's description, read by the report too
from .rundir import RunLock, atomic_write, atomic_write_json

RUNS_DIR = "runs"
LOGS_DIR = "logs"
ORDER = ["random", "simclr", "moco", "mocov2", "vicreg", "vae", "beta-vae", "cr-vae", "simvae"]  # the paper's row order
EVAL_GUESS_S = {True: 120.0, False: 600.0}  # seconds per evaluation (quick, full) until one is measured


@dataclass
class GridRun:
    """One run of a grid: its folder, the ``simvae train`` options that define it, the
    ``simvae evaluate`` options, and the evaluation folder name its metrics land in."""

    name: str
    method: str
    seed: int
    folder: str
    train_args: list[str]
    eval_args: list[str]
    eval_name: str
    epochs: int
    steps: int  # optimiser steps planned
    value: str | None = None  # the swept value (sweeps)
    config: dict = field(default_factory=dict)  # the resolved config (train, method, eval)

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def metrics_path(self) -> Path:
        return self.path / "eval" / self.eval_name / "metrics.json"


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_seeds(text: str) -> list[int]:
    """``3`` -> [0, 1, 2] (a count); ``0,4,7`` -> those seeds. Raises ConfigError."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3: seeds 0, 1, 2) or a comma-separated list (0,4,7), got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must name at least one seed, each once, got {text!r}")
    return seeds


def parse_methods(text: str, known: list[str]) -> list[str]:
    """``all`` or a comma-separated list of methods, in the paper's row order. Raises ConfigError."""
    from .config import suggest

    if text.strip() == "all":
        return [m for m in ORDER if m in known] + sorted(set(known) - set(ORDER))
    methods = [m.strip() for m in text.replace(" ", ",").split(",") if m.strip()]
    for m in methods:
        if m not in known:
            raise ConfigError(f"unknown method '{m}' in --methods{suggest(m, known)}; choose from {', '.join(sorted(known))} or all")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"--methods names a method twice: {text}")
    return sorted(methods, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def parse_epochs_for(items: list[str], methods: list[str]) -> dict[str, int]:
    """``["simclr=5", "vae=11"]`` -> {method: epochs}. Raises ConfigError."""
    out = {}
    for item in items:
        method, _, n = item.partition("=")
        if method not in methods or method == "random" or not n.isdigit() or int(n) < 1:
            raise ConfigError(
                f"--epochs-for takes METHOD=N with a method of the grid other than random (it is untrained) and N >= 1, got {item!r}"
            )
        out[method] = int(n)
    return out


def set_to_args(items: list[str]) -> list[str]:
    """``--set section.key=value`` items as the ``simvae train`` options they stand for
    (``train.lr=3e-4`` -> ``--lr 3e-4``; booleans -> ``--key`` / ``--no-key``). Raises ConfigError."""
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not eq or not dot or section not in ("train", "method", "eval") or not name:
            raise ConfigError(f"--set takes SECTION.KEY=VALUE with SECTION train, method or eval, got {item!r}")
        out += option_args(name, value)
    return out


def option_args(name: str, value: str) -> list[str]:
    """The ``simvae train`` option for config key ``name`` set to ``value`` (text)."""
    flag = "--" + name.replace("_", "-")
    if value.lower() in ("true", "false"):
        return [flag if value.lower() == "true" else "--no-" + flag[2:]]
    return [flag, value]


def split_options(argv: list[str]) -> list[list[str]]:
    """Command-line options grouped as [option, its values...] (a value never starts with ``--``)."""
    groups: list[list[str]] = []
    for a in argv:
        if a.startswith("--") or not groups:
            groups.append([a])
        else:
            groups[-1].append(a)
    return groups


def eval_options(argv: list[str]) -> list[str]:
    """The options of ``argv`` that ``simvae evaluate`` also takes (evaluation settings, --quick-eval,
    --device); the training seed is not one of them."""
    from .run_config import EvalConfig

    out = []
    for group in split_options(argv):
        name = group[0][2:].split("=", 1)[0].replace("-", "_")
        base = name[3:] if name.startswith("no_") else name
        if name == "quick_eval" or (base in EvalConfig.model_fields and base != "seed"):
            out += group
    return out


# What the grid needs from the command line: the resolved config of ``simvae train ARGS`` and the
# evaluation settings ``simvae evaluate RUN ARGS`` would use (the CLI provides it).
Resolver = Callable[[list[str], list[str]], tuple]


def make_runs(
    out: Path,
    dataset: str,
    methods: list[str],
    seeds: list[int],
    epochs: int,
    epochs_for: dict[str, int],
    common: list[str],
    resolve: Resolver,
    param: str | None = None,
    values: list[str] = (),
) -> list[GridRun]:
    """Every run of a grid, its config resolved (and so checked) before anything runs.

    ``common`` are ``simvae train`` options given to every run; ``param``/``values`` (sweeps) add
    ``--KEY VALUE`` per value. Raises ConfigError (SystemExit from the option parser) for a bad option."""
    from .evaluate import evaluation_name
    from .run_config import step_size

    owned = [
        g[0] for g in split_options(common) if g[0].split("=", 1)[0] in ("--seed", "--method", "--dataset", "--epochs", "--out", "--resume")
    ]
    if owned:
        raise ConfigError(
            f"{owned[0]} is set by the grid itself (use --seeds, --methods/--method, --dataset, --epochs, --epochs-for, --out)"
        )
    common = method_options_for_grid(common, methods)
    runs = []
    for value in values or [None]:
        for method in methods:
            for seed in seeds:
                n_epochs = 1 if method == "random" else epochs_for.get(method, epochs)
                args = ["--dataset", dataset, "--method", method, "--seed", str(seed), "--epochs", str(n_epochs), *common.get(method, [])]
                name = f"{method}-s{seed}"
                if param is not None:
                    args += set_to_args([f"{param}={value}"])
                    name = f"{method}-{param.split('.', 1)[1]}={value}-s{seed}"
                evals = eval_options(args)
                run, eval_cfg = resolve(args, evals)
                images, _ = step_size(run)
                n_train = run.train.train_subset or _train_size(run)
                steps = n_epochs * max(1, -(-n_train // images)) if n_train else 0
                runs.append(
                    GridRun(
                        name,
                        method,
                        seed,
                        str(out / RUNS_DIR / name),
                        args,
                        evals,
                        evaluation_name(eval_cfg),
                        n_epochs,
                        steps,
                        value,
                        run.to_dict(),
                    )
                )
    return runs


def method_options_for_grid(common: list[str], methods: list[str]) -> dict[str, list[str]]:
    """The options each method's runs get: every option of ``common``, except a method option
    (``--beta``, ``--temperature``) for the methods that do not take it. Raises ConfigError for a
    method option that no method of the grid takes."""
    from .run_config import method_option_table

    table = method_option_table()
    renamed = {}
    try:
        from .methods import RENAMED_OPTIONS

        renamed = dict(RENAMED_OPTIONS)
    except ImportError:  # pragma: no cover
        pass
    out = {m: [] for m in methods}
    for group in split_options(common):
        name = group[0][2:].split("=", 1)[0].replace("-", "_")
        base = name[3:] if name.startswith("no_") and name[3:] in table else name
        base = renamed.get(base, base)
        takers = methods if base not in table else [m for m in methods if m in table[base]["methods"]]
        if not takers:
            raise ConfigError(
                f"option {group[0]} applies to {', '.join(table[base]['methods'])}, none of which is in this grid ({', '.join(methods)})"
            )
        for m in takers:
            out[m] += group
    return out


_SIZES = {"mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000}


def _train_size(run) -> int | None:
    return _SIZES.get(run.train.dataset)


# ---------------------------------------------------------------------------------------------- state


def differences(held: dict, wanted: dict) -> list[str]:
    """Experiment keys (``section.key``) that differ between two configs, as "key held -> wanted"."""
    from .run_config import build_run_config, experiment_keys

    def full(config: dict) -> dict:  # a key added to simvae since a run was written counts at its default
        try:
            return build_run_config({k: v for k, v in config.items() if k in ("train", "method", "eval")}).to_dict()
        except SimvaeError:
            return config

    a, b = experiment_keys(full(held)), experiment_keys(full(wanted))
    return [f"{k} {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def run_state(r: GridRun) -> str:
    """What a run needs next: ``done`` (evaluated as asked, on its finished model), ``evaluate``,
    ``resume``, ``extend`` (trained for fewer epochs than asked), ``restart`` (stopped before its first
    checkpoint) or ``train``. Raises RunDirError when the folder holds a different experiment."""
    f = r.path
    held = _read(f / "config.json") if (f / "config.json").is_file() else None
    if held is None:
        if (f / "config.json").is_file():
            raise RunDirError(f"{f}/config.json is damaged; delete {f} to train the run again")
        return "train"
    differ = [d for d in differences(held, r.config) if not d.startswith("train.epochs ")]
    if differ:
        raise RunDirError(
            f"{f} holds a different run ({'; '.join(differ[:3])}{'; ...' if len(differ) > 3 else ''}); "
            "choose another --out, or delete that folder"
        )
    held_epochs = (held.get("train") or {}).get("epochs")
    if not (f / "checkpoint.pt").is_file():
        return "restart"
    if held_epochs is not None and held_epochs > r.epochs:
        raise RunDirError(
            f"{f} was planned for {held_epochs} epochs, more than the {r.epochs} asked; choose another --out, or delete that folder"
        )
    summary = _read(f / "train_summary.json") or {}
    finished = bool(summary.get("finished")) and summary.get("epochs") == held_epochs
    metrics = _read(r.metrics_path)
    if held_epochs == r.epochs and finished and metrics is not None and metrics.get("finished") and metrics.get("model_epoch") == r.epochs:
        return "done"
    if held_epochs is not None and held_epochs < r.epochs:
        return "extend"
    return "evaluate" if finished else "resume"


def commands(r: GridRun, state: str, threads: int | None) -> list[list[str]]:
    """The ``simvae`` command lines (without the interpreter) that take a run from ``state`` to done."""
    th = ["--threads", str(threads)] if threads else []
    evaluate = ["evaluate", r.folder, "--quiet", *r.eval_args]
    if state == "done":
        return []
    if state == "evaluate":
        return [evaluate]
    if state in ("resume", "extend"):
        extend = ["--epochs", str(r.epochs)] if state == "extend" else []
        return [["train", "--resume", r.folder, "--no-eval", "--quiet", *th, *extend], evaluate]
    over = ["--overwrite"] if state == "restart" else []
    return [["train", "--out", r.folder, "--no-eval", "--quiet", *over, *r.train_args, *th], evaluate]


# Each run command: ``python -m simvae ARGS`` that first asks Linux to SIGTERM it when the grid dies
# (PR_SET_PDEATHSIG; it then writes a checkpoint and stops) and stops at once if the grid is already gone.
_CHILD = """
import os, runpy, signal, sys
try:
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.environ.get("SIMVAE_GRID_PID") and os.getppid() != int(os.environ["SIMVAE_GRID_PID"]):
    sys.exit("simvae: the grid that started this run is gone")
sys.argv = ["simvae", *sys.argv[1:]]
runpy.run_module("simvae", run_name="__main__", alter_sys=True)
"""


def child_env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_PROCS: set[subprocess.Popen] = set()
_PROCS_LOCK = threading.Lock()
_STOP = threading.Event()  # set when the grid is interrupted: no run starts another command


def wait_unlocked(folder: Path, timeout: float = 300.0) -> bool:
    """Wait until no process holds ``folder``'s run lock (a run of a killed grid finishing its last
    checkpoint); False when it is still held after ``timeout`` seconds."""
    if not folder.is_dir():
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            RunLock(folder, "simvae grid (waiting)").acquire().release()
            return True
        except RunDirError:
            if time.monotonic() > deadline or _STOP.is_set():
                return False
            time.sleep(1.0)


def execute(r: GridRun, threads: int | None, log_dir: str, retries: int = 1) -> dict:
    """Take one run to done with subprocesses (``python -m simvae ...``), logging to
    ``log_dir/NAME.log``; a failure is retried ``retries`` times from where the run then stands.
    Returns {"name", "ok", "states" (what each attempt found), "seconds", "error" (last log lines)}."""
    t0 = time.monotonic()
    log = Path(log_dir) / f"{r.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    states, error = [], ""
    for attempt in range(retries + 1):
        try:
            state = run_state(r)
        except SimvaeError as e:
            return {"name": r.name, "ok": False, "states": states, "seconds": time.monotonic() - t0, "error": str(e)}
        states.append(state)
        if state != "done" and not wait_unlocked(r.path):
            return {
                "name": r.name,
                "ok": False,
                "states": states,
                "seconds": time.monotonic() - t0,
                "error": f"{r.folder} stayed in use by another process (see its .lock)",
            }
        if state == "done":
            return {"name": r.name, "ok": True, "states": states, "seconds": time.monotonic() - t0, "error": ""}
        rc = 0
        for cmd in commands(r, state, threads):
            with open(log, "a") as fh:
                fh.write(f"\n$ simvae {' '.join(cmd)}   # attempt {attempt + 1}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                fh.flush()
                with _PROCS_LOCK:  # no new process once the grid is stopping
                    if _STOP.is_set():
                        return {
                            "name": r.name,
                            "ok": False,
                            "states": states,
                            "seconds": time.monotonic() - t0,
                            "error": "the grid was interrupted",
                            "interrupted": True,
                        }
                    p = subprocess.Popen(
                        [sys.executable, "-c", _CHILD, *cmd],
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        env={**child_env(threads), "SIMVAE_GRID_PID": str(os.getpid())},
                    )
                    _PROCS.add(p)
                try:
                    rc = p.wait()
                finally:
                    with _PROCS_LOCK:
                        _PROCS.discard(p)
            if rc != 0:
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
                error = f"'simvae {cmd[0]}' exited with {rc}: {lines[-1] if lines else ''} (log {log})"
                break
        if rc == 0 and run_state(r) == "done":
            return {"name": r.name, "ok": True, "states": states, "seconds": time.monotonic() - t0, "error": ""}
        if rc == 0:
            error = f"the commands succeeded but {r.name} is not evaluated (log {log})"
    return {"name": r.name, "ok": False, "states": states, "seconds": time.monotonic() - t0, "error": error}


def execute_from_dict(run: dict, threads: int | None, log_dir: str, retries: int = 1) -> dict:
    """``execute`` of a run given as a dict (what a slurm job receives)."""
    return execute(GridRun(**run), threads, log_dir, retries)


def terminate_children() -> None:
    """SIGTERM every run process this grid started (each writes a checkpoint and stops); no run
    starts another command afterwards."""
    with _PROCS_LOCK:
        _STOP.set()
        procs = list(_PROCS)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


# ---------------------------------------------------------------------------------------------- budget


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measured_seconds(r: GridRun) -> tuple[float | None, float | None]:
    """(training seconds per step, evaluation seconds) of a run folder, where it recorded them."""
    summary = _read(r.path / "train_summary.json") or {}
    metrics = _read(r.metrics_path) or {}
    per_step = summary["train_seconds"] / summary["steps"] if summary.get("steps") and summary.get("train_seconds") else None
    return per_step, metrics.get("eval_seconds")


def probe_step_seconds(runs: list[GridRun], threads: int | None, steps: int = 20, log=print) -> dict[str, float]:
    """Seconds per optimiser step of each method of ``runs`` (its first run's config), timed by
    training ``steps`` steps in this process into a temporary folder."""
    import tempfile

    import torch

    from .run_config import build_run_config, load_data, step_size
    from .train import train

    if threads:
        torch.set_num_threads(threads)
    out, data = {}, {}
    with tempfile.TemporaryDirectory(prefix="simvae-probe-") as tmp:
        for r in runs:
            if r.method in out or r.method == "random":
                continue
            cfg = json.loads(json.dumps(r.config))
            run = build_run_config(cfg)
            images, _ = step_size(run)
            key = json.dumps({k: cfg["train"].get(k) for k in ("dataset", "data_dir", "binarize")}, sort_keys=True)
            if key not in data:
                data[key] = load_data(run.train)
            cfg["train"].update(
                epochs=1, train_subset=min(len(data[key].train_images), images * steps), checkpoint_minutes=0, threads=threads
            )
            t0 = time.monotonic()
            summary = train(build_run_config(cfg), Path(tmp) / r.method, data=data[key], progress=False)
            out[r.method] = summary["train_seconds"] / max(1, summary["steps"])
            log(f"probe: {r.method} {out[r.method] * 1000:.0f} ms per step ({time.monotonic() - t0:.1f} s)")
    return out


class Estimate:
    """Seconds each run will take: measured per method where runs of it are done, else the probe's
    step time times its steps plus an evaluation guess."""

    def __init__(self, runs: list[GridRun], step_s: dict[str, float], quick: bool):
        self.runs, self.step_s, self.quick = runs, dict(step_s), quick
        self.done_s: dict[str, list[float]] = {}
        self.eval_s: list[float] = []
        for r in runs:
            per_step, ev = measured_seconds(r)
            if per_step is not None:
                self.step_s.setdefault(r.method, per_step)
            if ev is not None:
                self.eval_s.append(ev)

    def record(self, r: GridRun, seconds: float, states: list[str]) -> None:
        if states and states[0] == "train":
            self.done_s.setdefault(r.method, []).append(seconds)
        _, ev = measured_seconds(r)
        if ev is not None:
            self.eval_s.append(ev)

    def eval_seconds(self) -> float:
        return sum(self.eval_s) / len(self.eval_s) if self.eval_s else EVAL_GUESS_S[self.quick]

    def seconds(self, r: GridRun, state: str) -> float | None:
        if state == "done":
            return 0.0
        if state == "evaluate":
            return self.eval_seconds()
        if state == "train" and self.done_s.get(r.method):
            return sum(self.done_s[r.method]) / len(self.done_s[r.method])
        s = self.step_s.get(r.method, 0.0 if r.method == "random" else None)
        return None if s is None else s * r.steps + self.eval_seconds() + 10.0  # + process starts


# ---------------------------------------------------------------------------------------------- the grid


@dataclass
class Grid:
    """A planned grid: where it lives, its runs, and what it is (written to ``OUT/grid.json``)."""

    out: Path
    kind: str  # "reproduce" or "sweep"
    dataset: str
    methods: list[str]
    seeds: list[int]
    runs: list[GridRun]
    info: dict = field(default_factory=dict)  # epochs, epochs_for, train_subset, quick, param, values, command

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.out / GRID_FILE,
            {
                "kind": self.kind,
                "dataset": self.dataset,
                "methods": self.methods,
                "seeds": self.seeds,
                **self.info,
                "runs": [asdict(r) for r in self.runs],
            },
        )

    def write_outputs(self) -> list[Path]:
        """The grid's tables from the runs evaluated so far: reproduce: table1/5/6/7/style (.md, .csv) and
        claims.md; sweep: sweep.md, sweep.csv and its plots. Returns the paths written."""
        from .report.claims import claims_markdown
        from .report.tables import read_grid, write_sweep, write_tables

        grid = read_grid(self.out)
        if self.kind == "sweep":
            return write_sweep(self.out, grid)
        paths = write_tables(self.out, grid)
        return paths + [atomic_write(self.out / "claims.md", claims_markdown(grid))]


def make_grid(
    kind: str,
    out: Path,
    dataset: str,
    methods: list[str],
    seeds: list[int],
    epochs: int,
    epochs_for: dict[str, int],
    common: list[str],
    resolve: Resolver,
    command: list[str] | None = None,
    quick: bool = False,
    train_subset=None,
    param: str | None = None,
    values: list[str] = (),
) -> Grid:
    """A planned grid (every run's config resolved and checked; nothing runs). Raises ConfigError."""
    if param is not None:
        section, _, key = param.partition(".")
        if section not in ("train", "method", "eval") or not key:
            raise ConfigError(f"--param takes SECTION.KEY with SECTION train, method or eval (train.lr, method.n_views), got {param!r}")
        if key in ("seed", "method", "dataset", "epochs"):
            raise ConfigError(f"--param {param} is a grid axis of its own: use --seeds, --method, --dataset or --epochs")
        if len(set(values)) != len(values):
            raise ConfigError(f"--values names a value twice: {' '.join(values)}")
        bad = [v for v in values if "/" in v or v.startswith("-") and not v[1:2].isdigit()]
        if bad:
            raise ConfigError(f"--values {bad[0]!r} cannot name a run folder")
    runs = make_runs(Path(out), dataset, methods, seeds, epochs, epochs_for, common, resolve, param, list(values))
    info = {
        "epochs": epochs,
        "epochs_for": epochs_for,
        "train_subset": train_subset,
        "quick": quick,
        "common": common,
        "command": command or [],
    }
    if param is not None:
        info.update(param=param, values=list(values))
    return Grid(Path(out), kind, dataset, methods, seeds, runs, info)


def load_grid(out: str | Path) -> Grid:
    """The grid of folder ``out`` (its grid.json). Raises RunDirError when there is none."""
    out = Path(out)
    g = _read(out / GRID_FILE)
    if g is None:
        raise RunDirError(f"{out} holds no grid ({GRID_FILE}); run 'simvae reproduce' or 'simvae sweep' with --out {out}")
    runs = [GridRun(**r) for r in g.pop("runs")]
    return Grid(out, g.pop("kind"), g.pop("dataset"), g.pop("methods"), g.pop("seeds"), runs, g)


def _progress_line(states: dict[str, str], failed: int, left_s: float | None) -> str:
    done = sum(s == "done" for s in states.values())
    running = sum(s == "running" for s in states.values())
    left = sum(s not in ("done", "running", "failed") for s in states.values())
    return (
        f"grid: {done}/{len(states)} done, {running} running, {left} left"
        + (f", {failed} failed" if failed else "")
        + f"; about {_fmt_time(left_s)} left"
    )


def run_grid(
    grid: Grid,
    jobs: int = 1,
    threads: int | None = None,
    launcher: str = "local",
    retries: int = 1,
    estimate: bool = True,
    slurm: dict | None = None,
    log=None,
) -> list[dict]:
    """Run every run of ``grid`` not yet done; print the plan, an estimate, and the grid's progress on one
    line. Returns each run's result (``execute``). ``launcher`` "dry-run" prints the plan and estimate
    and writes nothing. Raises RunDirError when a run folder holds another experiment or another grid
    works in ``grid.out``."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _STOP.clear()
    threads = threads or max(1, cores() // max(1, jobs))
    # planned and estimated before anything is written: a refused or dry-run grid leaves no trace
    planned = {r.name: run_state(r) for r in grid.runs}  # refuses a folder holding another experiment
    counts = {s: sum(v == s for v in planned.values()) for s in ("train", "restart", "resume", "extend", "evaluate", "done")}
    log(
        f"{grid.kind}: {len(grid.runs)} runs in {grid.out / RUNS_DIR} ("
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f"); {jobs} at once, {threads} thread(s) each"
        + (" (slurm)" if launcher == "slurm" else "")
    )
    todo = [r for r in grid.runs if planned[r.name] != "done"]
    step_s: dict[str, float] = {}
    if estimate and todo and launcher in ("local", "dry-run") and any(planned[r.name] != "evaluate" for r in todo):
        known = {r.method for r in grid.runs if measured_seconds(r)[0] is not None}
        probe = [r for r in todo if r.method not in known]
        if probe:
            try:
                step_s = probe_step_seconds(probe, threads, log=log)
            except SimvaeError as e:
                log(f"probe: skipped ({e})")
    est = Estimate(grid.runs, step_s, bool(grid.info.get("quick")))

    def left_seconds(states: dict[str, str]) -> float | None:
        total = 0.0
        for r in grid.runs:
            s = states[r.name]
            if s in ("done", "failed"):
                continue
            sec = est.seconds(r, planned[r.name])
            if sec is None:
                return None
            total += sec / (2 if s == "running" else 1)  # a running run: half left, on average
        return total / max(1, min(jobs, len(todo) or 1))

    states = {r.name: ("done" if planned[r.name] == "done" else "left") for r in grid.runs}
    log(
        f"estimate: {len(todo)} runs to do, about {_fmt_time(left_seconds(states))} "
        f"(training {'probed' if step_s else 'from runs done'}; evaluation "
        f"{'measured' if est.eval_s else 'guessed'} at {_fmt_time(est.eval_seconds())} per run)"
    )
    if launcher == "dry-run":
        return []
    grid.out.mkdir(parents=True, exist_ok=True)
    with RunLock(grid.out, f"simvae {grid.kind}"):
        grid.save()
        if not todo:
            return []
        if launcher == "slurm":
            return _run_slurm(grid, todo, threads, retries, slurm or {}, states, log)
        return _run_local(grid, todo, jobs, threads, retries, states, est, left_seconds, log)


def _run_local(grid, todo, jobs, threads, retries, states, est, left_seconds, log) -> list[dict]:
    results, failed = [], 0
    tty = sys.stderr.isatty()
    last, last_t = [""], [0.0]

    def show(force: bool = False) -> None:  # a terminal: one line redrawn; a log: on a change, else every 2 minutes
        line = _progress_line(states, failed, left_seconds(states))
        if tty:
            print("\r" + line.ljust(len(last[0])), end="", file=sys.stderr, flush=True)
        elif force or line.split(";")[0] != last[0].split(";")[0] or time.monotonic() - last_t[0] > 120:
            log(line)
            last_t[0] = time.monotonic()
        last[0] = line

    def task(r: GridRun) -> dict:
        states[r.name] = "running"
        return execute(r, threads, str(grid.out / LOGS_DIR), retries)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    pool = cf.ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(task, r): r for r in todo}
        pending = set(futures)
        show(True)
        while pending:
            finished, pending = cf.wait(pending, timeout=5, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                r = futures[fut]
                res = fut.result()
                results.append(res)
                states[r.name] = "done" if res["ok"] else "failed"
                if res["ok"]:
                    est.record(r, res["seconds"], res["states"])
                else:
                    failed += 1
                    if tty:
                        print(file=sys.stderr)
                    log(f"grid: {r.name} failed after a retry: {res['error']}")
            show()
        if tty:
            print(file=sys.stderr)
    except KeyboardInterrupt:
        if tty:
            print(file=sys.stderr)
        log("grid: interrupted; stopping the runs (each writes a checkpoint)")
        for fut in futures:
            fut.cancel()
        terminate_children()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=False)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    return results


def _run_slurm(grid, todo, threads, retries, opts: dict, states, log) -> list[dict]:
    """One submitit job per run (``opts``: partition, time (minutes), gpus_per_run, executor: an
    executor to use instead of slurm's, e.g. ``submitit.LocalExecutor`` in tests)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'simvae[slurm]'") from None
    executor = opts.get("executor")
    if executor is None:
        executor = submitit.AutoExecutor(folder=str(grid.out / "slurm"))
        params = {
            "timeout_min": int(opts.get("time") or 24 * 60),
            "cpus_per_task": threads or 1,
            "gpus_per_node": int(opts.get("gpus_per_run") or 0),
            "name": f"simvae-{grid.kind}",
        }
        if opts.get("partition"):
            params["slurm_partition"] = opts["partition"]
        executor.update_parameters(**params)
    jobs = [(r, executor.submit(execute_from_dict, asdict(r), threads, str(grid.out / LOGS_DIR), retries)) for r in todo]
    log(f"grid: submitted {len(jobs)} jobs ({', '.join(str(j.job_id) for _, j in jobs[:5])}{', ...' if len(jobs) > 5 else ''})")
    results, failed, shown = [], 0, ""
    pending = list(jobs)
    while pending:
        still = []
        for r, job in pending:
            if job.done():
                try:
                    res = job.result()
                except Exception as e:  # noqa: BLE001 - a job that died on the cluster
                    res = {"name": r.name, "ok": False, "states": [], "seconds": 0.0, "error": f"job {job.job_id}: {e}"}
                results.append(res)
                states[r.name] = "done" if res["ok"] else "failed"
                if not res["ok"]:
                    failed += 1
                    log(f"grid: {r.name} failed: {res['error']}")
            else:
                states[r.name] = "running" if str(getattr(job, "state", "")).upper() == "RUNNING" else states[r.name]
                still.append((r, job))
        pending = still
        line = _progress_line(states, failed, None).split(";")[0]
        if line != shown:
            log(line)
            shown = line
        if pending:
            time.sleep(float(opts.get("poll_s", 10)))
    return results
