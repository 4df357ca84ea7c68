#!/usr/bin/env python
"""Fair share on a busy machine: one ``simvae train`` alone, then several at once.

Starts ``simvae train`` as subprocesses (the real command, SimVAE on Fashion-MNIST with the
MLP networks and the default 12 images x 10 views per step, a short budget: ``--train-subset
24000 --epochs 1 --no-eval``), first one alone and then ``--concurrent`` of them together, and
prints each one's training speed in views/s and as a fraction of the solo speed. On C cores,
N trainings that share them fairly each run at about min(1, C/N) of solo (0.5 for two on two
cores) or better, since one thread does more per core than two.

Speed is measured while the runs go: each run is the real ``simvae train`` (``simvae.cli.main``)
with one addition, a line "time steps" every 5 training steps in a file of its own (``RUNNER``
below), and the parent counts the steps each one made in the window where all of them were past
start-up and warm-up and none had finished, so a run that ends early does not
leave the others a solo stretch that flatters them. The window lasts at most ``--seconds``
(then the runs are stopped), so a slow policy costs no more time than a fast one. The CPU time of everything else on the
machine in that window (from /proc/stat, less what the runs themselves used) is printed as
"others" (cores): other people's jobs make a measurement noisy; repeat it (``--repeats``).

Policies to compare (``--policy``, repeatable): ``default`` (nothing set), or a comma-separated
list of ``option=value`` (a ``simvae train`` option: ``threads=1``) and ``ENV=VALUE`` (an
environment variable, upper case: ``OMP_WAIT_POLICY=PASSIVE``, ``SIMVAE_THREADS=...``). E.g.

    python benchmarks/concurrent_training.py
    python benchmarks/concurrent_training.py --policy default --policy threads=1 \\
        --policy OMP_WAIT_POLICY=PASSIVE --policy threads=2,OMP_WAIT_POLICY=PASSIVE --repeats 2

The last line printed is one JSON object with every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# environment variables that change threading: cleared so that a policy sets them explicitly
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "SIMVAE_THREADS")


# The command each run executes: `simvae train ARGS` (simvae.cli.main), with one addition: every
# HEARTBEAT_EVERY training steps it appends "monotonic-time steps" to $SIMVAE_BENCH_HEARTBEAT, so
# that a slow run is measured as precisely as a fast one (CLOCK_MONOTONIC is shared by all
# processes). What `simvae train` does before PyTorch is loaded (the OpenMP wait policy) is done
# first, as the command does it.
HEARTBEAT_EVERY = 5
RUNNER = r"""
import os, sys, time
try:
    from simvae.hardware import openmp_wait_policy
    openmp_wait_policy()
except ImportError:
    pass
from simvae.train import loop
_step, _out, _n = loop.Trainer.train_step, open(os.environ["SIMVAE_BENCH_HEARTBEAT"], "a", buffering=1), [0]
def train_step(self, idx):
    terms = _step(self, idx)
    _n[0] += 1
    if _n[0] % %d == 0:
        _out.write(f"{time.monotonic()} {_n[0]}\n")
    return terms
loop.Trainer.train_step = train_step
from simvae.cli import main
sys.argv = ["simvae", *sys.argv[1:]]
sys.exit(main())
""".replace("%d", str(HEARTBEAT_EVERY))


def parse_policy(spec: str) -> tuple[list[str], dict[str, str]]:
    """``default`` or ``a=b,C=D``: (simvae train options, environment)."""
    args, env = [], {}
    if spec.strip() in ("", "default"):
        return args, env
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise SystemExit(f"concurrent_training.py: error: policy item {item!r} is not key=value")
        if key.isupper():
            env[key] = value
        else:
            args += ["--" + key.replace("_", "-"), value]
    return args, env


def busy_jiffies_total() -> int:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return sum(f[:3]) + sum(f[5:8])  # user nice system irq softirq steal (idle, iowait left out)


def jiffies_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime stime (all threads)
    except (OSError, ValueError, IndexError):
        return None


def heartbeats(path: Path) -> list[tuple[float, int]]:
    """(monotonic time, steps done) lines a run wrote so far."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            try:
                out.append((float(parts[0]), int(parts[1])))
            except ValueError:
                continue
    return out


def _started(log_path: Path) -> tuple[int | None, int | None]:
    """(views per step, threads at the start) from a run's start-up line, once printed."""
    try:
        text = log_path.read_text()
    except OSError:
        return None, None
    size = re.search(r"(\d+) images? x (\d+) views?", text)
    threads = re.search(r"(\d+) threads?,", text)
    return (int(size[1]) * int(size[2]) if size else None), (int(threads[1]) if threads else None)


def run_group(n: int, train_args: list[str], env_extra: dict[str, str], workdir: Path, poll_s: float, window_s: float | None) -> dict:
    """Start ``n`` trainings at once and measure each one's speed in the window where all of them
    were training: from the moment the last one logged its first steps to the moment the first
    one ended, or ``window_s`` seconds (then all are stopped)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env.update({"SIMVAE_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env_extra})
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    outs = [workdir / f"run{i}" for i in range(n)]
    log_paths = [Path(str(out) + ".log") for out in outs]
    procs, logs = [], []
    beats = [Path(str(out) + ".steps") for out in outs]
    for out, log_path, beat in zip(outs, log_paths, beats):
        log = open(log_path, "w")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RUNNER, "train", "--out", str(out), *train_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**env, "SIMVAE_BENCH_HEARTBEAT": str(beat)},
                cwd=workdir,
            )
        )
    obs: list[list[tuple[float, int]]] = [[] for _ in procs]
    cpu: list[tuple[float, int, int]] = []  # (time, machine busy jiffies, runs' jiffies)
    last_cpu = [0] * n
    ended: list[float | None] = [None] * n
    killed: set[int] = set()  # stopped here: the window closed, or another run ended first
    try:
        while all(e is None for e in ended):
            now = time.monotonic()
            for i, p in enumerate(procs):
                j = jiffies_of(p.pid)
                if j is not None:
                    last_cpu[i] = j
                obs[i] = heartbeats(beats[i])[2:]  # the first 2 x HEARTBEAT_EVERY steps warm up
                if p.poll() is not None:
                    ended[i] = now
            cpu.append((now, busy_jiffies_total(), sum(last_cpu)))
            if window_s and all(obs) and now - max(o[0][0] for o in obs) >= window_s:
                for i in range(n):  # the last beats before stopping
                    obs[i] = heartbeats(beats[i])[2:]
                break
            time.sleep(poll_s)
    finally:
        for i, p in enumerate(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
                killed.add(i)
        for log in logs:
            log.close()
    for i, p in enumerate(procs):
        if i not in killed and p.returncode != 0:
            tail = log_paths[i].read_text().splitlines()[-5:]
            raise SystemExit(f"concurrent_training.py: error: a training exited {p.returncode}:\n  " + "\n  ".join(tail))
    if not all(obs):
        raise SystemExit("concurrent_training.py: error: a run logged no steps; raise --train-subset or --seconds")
    start = max(o[0][0] for o in obs)
    end = min(o[-1][0] for o in obs)
    runs = []
    for i, o in enumerate(obs):
        inside = [(t, s) for t, s in o if start <= t <= end]
        if len(inside) < 2:
            raise SystemExit("concurrent_training.py: error: the runs overlapped too briefly to measure; raise --train-subset or --seconds")
        (t0, s0), (t1, s1) = inside[0], inside[-1]
        vps, threads = _started(log_paths[i])
        text = log_paths[i].read_text()
        changes = [line.strip() for line in text.splitlines() if "threads" in line and "->" in line]
        runs.append(
            {
                "views_per_s": round((s1 - s0) * vps / (t1 - t0), 1),
                "steps_measured": s1 - s0,
                "threads_start": threads,
                "threads_end": int(changes[-1].split("->")[1].split()[0]) if changes else threads,
                "thread_changes": changes,
            }
        )
    inside_cpu = [c for c in cpu if start <= c[0] <= end] or cpu
    (ta, ba, ra), (tb, bb, rb) = inside_cpu[0], inside_cpu[-1]
    others = max(0.0, ((bb - ba) - (rb - ra)) / _HZ / max(tb - ta, 1e-9))
    return {"runs": runs, "window_s": round(end - start, 1), "others_cores": round(others, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Extra arguments after -- go to every `simvae train`.",
    )
    ap.add_argument("--policy", action="append", help="a policy to measure (repeatable; default: 'default')")
    ap.add_argument("--concurrent", type=int, default=2, help="trainings at once in the busy case (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="measure each policy this many times (default 1)")
    ap.add_argument("--train-subset", type=int, default=24000, help="training images per run (default 24000: 2,000 steps)")
    ap.add_argument(
        "--seconds", type=float, default=60.0, help="stop the runs after this many seconds of measuring (default 60; 0: let them finish)"
    )
    ap.add_argument("--data-dir", default=os.environ.get("SIMVAE_DATA_DIR", DEFAULT_DATA_DIR))
    ap.add_argument("--no-solo", action="store_true", help="skip the solo runs (fractions are then not printed)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between polls of the runs (default 0.2)")
    args, extra = ap.parse_known_args(argv)
    # SIGTERM (timeout, kill) ends the runs too: the finally of run_group kills them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    extra = [a for a in extra if a != "--"]
    policies = args.policy or ["default"]
    base = [
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        args.data_dir,
        "--no-download",
        "--device",
        "cpu",
        "--train-subset",
        str(args.train_subset),
        "--epochs",
        "1",
        "--no-eval",
        *extra,
    ]
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"host: {model}, {cores} usable cores; load average at start {os.getloadavg()[0]:.2f}")
    print(f"each run: simvae train {' '.join(base)}")
    results: dict = {"host": model, "cores": cores, "concurrent": args.concurrent, "policies": {}}
    print(f"{'policy':40s} {'case':>6s} {'views/s (each)':>22s} {'of solo':>14s} {'threads':>8s} {'others':>6s}")
    with tempfile.TemporaryDirectory(prefix="simvae-concurrent-") as tmp:
        for r in range(args.repeats):
            for p_index, spec in enumerate(policies):
                train_args, env = parse_policy(spec)
                res = results["policies"].setdefault(spec, {"solo": [], "busy": []})
                cases = ([1] if not args.no_solo else []) + [args.concurrent]
                for n in cases:
                    work = Path(tmp) / f"r{r}-p{p_index}-{n}"
                    work.mkdir()
                    g = run_group(n, base + train_args, env, work, args.poll, args.seconds)
                    (res["solo"] if n == 1 else res["busy"]).append(g)
                    speeds = [run["views_per_s"] for run in g["runs"]]
                    solo = statistics.median(s["runs"][0]["views_per_s"] for s in res["solo"]) if res["solo"] else None
                    frac = " ".join(f"{v / solo:.2f}" for v in speeds) if solo and n > 1 else ""
                    threads = "/".join(
                        f"{run['threads_start']}>{run['threads_end']}"
                        if run["threads_start"] != run["threads_end"]
                        else str(run["threads_end"])
                        for run in g["runs"]
                    )
                    print(
                        f"{spec:40s} {('solo' if n == 1 else f'{n} busy'):>6s} "
                        f"{' '.join(f'{v:.0f}' for v in speeds):>22s} {frac:>14s} {threads:>8s} "
                        f"{g['others_cores']:6.2f}",
                        flush=True,
                    )
                    for run in g["runs"]:
                        for change in run["thread_changes"]:
                            print(f"    {change}")
                    if n > 1 and solo:
                        g["fraction_of_solo"] = [round(v / solo, 3) for v in speeds]
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
