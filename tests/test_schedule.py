"""--schedule constant|cosine and --warmup-fraction: the learning rate each optimiser step uses."""

import math

import pytest
from conftest import tiny_train_config

from simvae.run_config import build_run_config
from simvae.train import Trainer


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_follows_the_schedule_and_reaches_adam(tiny_data, tmp_path, schedule):
    cfg = tiny_train_config(tiny_data, epochs=2, lr=1e-3, schedule=schedule, warmup_fraction=0.25)
    trainer = Trainer(build_run_config(cfg), tmp_path, progress=False)
    total = trainer.steps_per_epoch * 2  # 128 images / 32 = 4 steps per epoch
    lrs = [trainer.lr_at(s) for s in range(total)]
    assert lrs[:2] == pytest.approx([0.5e-3, 1e-3])  # 2 warm-up steps of 8: linear from 0
    if schedule == "constant":
        assert lrs[2:] == pytest.approx([1e-3] * (total - 2))
    else:
        assert (
            lrs[2] == pytest.approx(1e-3)
            and all(a > b for a, b in zip(lrs[2:], lrs[3:]))
            and lrs[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
        )
    trainer.fit(callbacks=[])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lrs[-1])


def test_the_paper_recipe_leaves_the_learning_rate_alone(tiny_data, tmp_path):
    trainer = Trainer(build_run_config(tiny_train_config(tiny_data, lr=3e-4)), tmp_path, progress=False)
    trainer.fit(callbacks=[])
    assert trainer.optimizer.param_groups[0]["lr"] == 3e-4
