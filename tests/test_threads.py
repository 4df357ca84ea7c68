"""CPU threads on a busy machine, and the training-time estimate.

The thread policy (``simvae.hardware``): OpenMP threads spin only briefly, and a run takes one
intra-op thread per core that other processes leave free, revised while it trains
(``ThreadTuner``). Its speed on a busy machine is measured by benchmarks/concurrent_training.py;
here only the decisions are tested, with a fake clock and a fake /proc/stat.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, cli_env

from simvae import hardware
from simvae.train.callbacks import Progress, StepClock, ThreadTuner


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "cores, others, expected",
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 2), (2, 0.8, 1), (2, 1.0, 1), (2, 3.0, 1), (1, 0.0, 1), (16, 3.2, 13), (16, 0.0, 16)],
)
def test_one_thread_per_core_left_free(cores, others, expected):
    assert hardware.threads_for(cores, others) == expected


def test_requested_threads_are_used_as_given_and_not_revised(keep_threads):
    choice = hardware.configure_threads(1)
    assert torch.get_num_threads() == 1 and choice.threads == 1
    assert not choice.adaptive and choice.reason.startswith("--threads 1")


def test_omp_num_threads_from_the_environment_is_kept(keep_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    choice = hardware.configure_threads(None, sample_s=0)
    assert not choice.adaptive and "OMP_NUM_THREADS=1" in choice.reason


def test_default_threads_follow_the_measured_load(keep_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    choice = hardware.configure_threads(None, sample_s=0.05)
    if choice.load is None:
        pytest.skip("/proc/stat is not readable here")
    assert choice.adaptive and 1 <= choice.threads <= hardware.usable_cores()
    assert torch.get_num_threads() == choice.threads
    assert "busy with other processes" in choice.reason or "none busy" in choice.reason


class FakeClock:
    def __init__(self):
        self.now, self.cpu = 100.0, 0.0

    def monotonic(self):
        return self.now

    def process_time(self):
        return self.cpu

    def sleep(self, s):
        self.now += s


def test_cpu_load_counts_other_processes_not_this_one(tmp_path, monkeypatch):
    """Busy ticks of this process's CPUs, less this process's own CPU time, per second."""
    clock = FakeClock()
    monkeypatch.setattr(hardware, "time", clock)
    stat = tmp_path / "stat"
    hz = hardware._CLK_TCK

    def write(busy0, busy1, busy_elsewhere):  # user nice system idle iowait irq softirq steal
        stat.write_text(
            f"cpu 0 0 0 0 0 0 0 0\ncpu0 {busy0} 0 0 500 0 0 0 0\ncpu1 {busy1} 0 0 500 0 0 0 0\n"
            f"cpu2 {busy_elsewhere} 0 0 0 0 0 0 0\nintr 0\n"
        )

    monkeypatch.setattr(hardware, "PROC_STAT", str(stat))
    write(0, 0, 0)
    load = hardware.CpuLoad()
    load.cpus = {"cpu0", "cpu1"}  # this process's affinity: cpu2 is someone else's machine
    load._last = load._read()
    clock.now += 10
    clock.cpu += 8.0  # this process used 8 CPU-seconds of the 10 s on its two CPUs
    write(10 * hz, 8 * hz, 10 * hz)  # 18 CPU-seconds busy on cpu0 + cpu1
    assert load.others() == pytest.approx(1.0)  # (18 - 8) / 10 s: one core busy with others


class FakeLoad:
    def __init__(self, values):
        self.values = list(values)

    def others(self):
        return self.values.pop(0)

    def seconds(self):
        return 1.0


def _tuner_trainer():
    return SimpleNamespace(step=0, dist=SimpleNamespace(main=True))


def test_tuner_drops_threads_at_once_and_adds_them_after_two_agreeing_checks(keep_threads):
    choice = hardware.ThreadChoice(2, "start", True, 2, FakeLoad([0.0, 1.0, 0.0, 1.0, 0.0, 0.1]))
    stream = io.StringIO()
    tuner = ThreadTuner(choice, stream=stream)
    trainer = _tuner_trainer()
    tuner.on_train_start(trainer)  # 0.0 busy: stays at 2
    assert choice.threads == 2
    tuner.check(trainer)  # another process takes a core: down at once
    assert choice.threads == 1 and torch.get_num_threads() == 1
    tuner.check(trainer)  # free again once: not yet
    assert choice.threads == 1
    tuner.check(trainer)  # busy again: the count of agreeing checks starts over
    tuner.check(trainer)
    assert choice.threads == 1
    tuner.check(trainer)  # free twice in a row: back to 2
    assert choice.threads == 2 and torch.get_num_threads() == 2
    assert [t for _, t in choice.changes] == [1, 2]
    assert "threads 2 -> 1" in stream.getvalue() and "busy with other processes" in choice.reason


def test_tuner_leaves_a_requested_count_alone(keep_threads):
    choice = hardware.ThreadChoice(2, "--threads 2", False, 2, None)
    tuner = ThreadTuner(choice, every_s=0.0)
    tuner.on_train_start(_tuner_trainer())
    tuner.on_step_end(_tuner_trainer(), {})
    assert choice.threads == 2 and tuner.changes == []


def test_wait_policy_is_set_before_torch_loads_and_the_users_choice_kept():
    code = (
        "import os, sys, simvae.hardware as h; r = h.openmp_wait_policy(); "
        "print(r.replace(' ', '-'), os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in cli_env().items() if k not in hardware.WAIT_POLICY_ENV}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["short-spin", "10000", "False"], out.stderr
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.startswith("OMP_WAIT_POLICY=ACTIVE-(environment) None"), out.stdout + out.stderr


def test_wait_policy_is_not_changed_once_torch_is_loaded(monkeypatch):
    for key in hardware.WAIT_POLICY_ENV:
        monkeypatch.delenv(key, raising=False)
    assert "torch" in sys.modules
    assert hardware.openmp_wait_policy().startswith("spin")
    assert "OMP_WAIT_POLICY" not in os.environ


# -- the training-time estimate ----------------------------------------------------------------


def test_step_clock_leaves_out_warm_up_and_pauses():
    clock = StepClock(warmup=3, window_s=1000)
    t = 0.0
    for dt in (5.0, 5.0, 5.0):  # slow warm-up steps
        t += dt
        clock.tick(t)
    assert clock.per_step is None
    for _ in range(4):
        t += 0.1
        clock.tick(t)
    assert clock.per_step == pytest.approx(0.1)
    clock.pause()
    t += 30.0  # an epoch's end: checkpoint, validation
    clock.tick(t)  # the first step after the pause only restarts the clock
    t += 0.1
    clock.tick(t)
    assert clock.per_step == pytest.approx(0.1) and clock.timed_steps == 5


def test_step_clock_follows_recent_speed():
    clock = StepClock(warmup=1, window_s=10)
    t = 0.0
    clock.tick(t)
    for _ in range(100):
        t += 0.1
        clock.tick(t)
    for _ in range(100):  # the machine got busy: 0.5 s per step for 50 s
        t += 0.5
        clock.tick(t)
    assert clock.per_step == pytest.approx(0.5)


class FakeTrainer(SimpleNamespace):
    pass


def test_estimate_skips_warm_up_and_is_revised_when_the_speed_changes(monkeypatch):
    import simvae.train.callbacks as cb

    clock = FakeClock()
    monkeypatch.setattr(cb, "time", clock)
    steps_per_epoch, epochs = 1000, 2
    trainer = FakeTrainer(
        steps_per_epoch=steps_per_epoch,
        run=SimpleNamespace(train=SimpleNamespace(epochs=epochs)),
        step=0,
        epoch=0,
        epoch_step=0,
        dist=SimpleNamespace(main=True),
        views_per_step=120,
        images_per_step=12,
        term_names={"loss"},
    )
    stream = io.StringIO()
    progress = Progress(True, every_s=1e9, stream=stream)
    progress.on_train_start(trainer)

    def steps(n, seconds):
        for _ in range(n):
            clock.now += seconds
            trainer.step += 1
            trainer.epoch_step += 1
            progress.on_step_end(trainer, {"loss": torch.tensor(1.0)})

    steps(5, 10.0)  # five slow warm-up steps would make the estimate 20x too long
    steps(60, 0.5)
    lines = [line for line in stream.getvalue().splitlines() if "estimat" in line]
    assert len(lines) == 1 and lines[0].startswith("estimated training time: ")
    minutes = float(lines[0].split("estimated training time: ")[1].split(" min")[0])
    total = steps_per_epoch * epochs
    assert (total - trainer.step) * 0.5 / 60 - 0.05 <= minutes <= total * 0.5 / 60  # at 0.5 s per step, not more
    assert "500 ms per step" in lines[0]
    steps(200, 0.5)  # steady: no revision
    assert sum("revised" in line for line in stream.getvalue().splitlines()) == 0
    steps(900, 0.1)  # the other job ended: 5x faster, for 90 s
    revised = [line for line in stream.getvalue().splitlines() if line.startswith("revised training time estimate")]
    assert 1 <= len(revised) <= 2  # at most one revision a minute
    assert "100 ms per step" in revised[-1]
    assert progress.seconds_left(trainer) == pytest.approx((steps_per_epoch * epochs - trainer.step) * 0.1)


def test_a_one_off_choice_does_not_promise_revision(keep_threads, monkeypatch):
    """``simvae evaluate`` chooses its threads once (``revised=False``); training's choice is revised."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    once = hardware.configure_threads(sample_s=0.0, revised=False)
    assert "revised" not in once.reason and 1 <= torch.get_num_threads() <= once.cores
    if once.adaptive:  # the load of other processes is measurable here (Linux /proc/stat)
        assert "revised while training" in hardware.configure_threads(sample_s=0.0).reason
