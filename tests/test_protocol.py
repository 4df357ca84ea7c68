"""The paper's protocol: 128 views per step, probe widths, clustering accuracy, precision, and
the traps that matter before the conv nets are used (issue: the paper's protocol, exactly)."""

import json
import warnings

import numpy as np
import pytest
import torch

from simvae import hardware as precision_mod
from simvae.errors import ConfigError
from simvae.evaluate.gmm import gmm_evaluate, match_clusters
from simvae.evaluate.probes import make_probe, train_probes
from simvae.methods import Batch, ModelSpec, build_method
from simvae.run_config import build_run_config, step_size
from simvae.train import train


@pytest.mark.parametrize(
    "method, options, images, views",
    [
        ("simvae", {}, 12, 120),  # 128 // 10 images x 10 views (the public code's 12 x 10)
        ("simvae", {"n_views": 4}, 32, 128),
        ("simclr", {}, 64, 128),  # pair methods: 64 x 2
        ("vicreg", {}, 64, 128),
        ("cr-vae", {}, 64, 128),  # the image and one augmentation
        ("vae", {}, 128, 128),
    ],
)
def test_views_per_step_is_the_default_unit(method, options, images, views):
    run = build_run_config({"train": {"method": method}, "method": options})
    assert run.train.views_per_step == 128 and run.train.batch_size is None
    assert step_size(run) == (images, views)


def test_batch_size_counts_images_and_excludes_views_per_step():
    run = build_run_config({"train": {"method": "simvae", "batch_size": 12}})
    assert step_size(run) == (12, 120)
    with pytest.raises(ConfigError, match="not both"):
        build_run_config({"train": {"method": "simvae", "batch_size": 12, "views_per_step": 128}})


def test_at_least_one_image_per_step():
    run = build_run_config({"train": {"method": "simvae", "views_per_step": 3}})
    assert step_size(run) == (1, 10)


def test_old_config_with_batch_size_and_bf16_still_loads():
    run = build_run_config({"train": {"method": "simvae", "batch_size": 128, "bf16": False}})
    assert step_size(run) == (128, 1280)
    assert run.train.precision == "fp32" and run.train.bf16 is None


def test_resolved_step_size_is_recorded(tiny_data, tmp_path):
    cfg = {
        "train": {
            "dataset": "mnist",
            "data_dir": str(tiny_data),
            "download": False,
            "device": "cpu",
            "train_subset": 64,
            "views_per_step": 16,
            "epochs": 1,
        },
        "method": {"n_views": 4},
    }
    summary = train(build_run_config(cfg), tmp_path / "run", progress=False)
    assert summary["images_per_step"] == 4 and summary["views_per_step"] == 16
    assert summary["steps"] == 64 // 4
    saved = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert saved["images_per_step"] == 4 and saved["views_per_step"] == 16
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["views_per_step"] == 16


def test_auto_precision_picks_bf16_only_where_it_is_faster(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(precision_mod, "cpu_bf16_gemm_speedup", lambda: pytest.fail("no native bf16: nothing to measure"))
    assert precision_mod.resolve_precision("auto", cpu) == "fp32"
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert precision_mod.resolve_precision("bf16", cpu) == "bf16"
    # AVX-512 BF16: native, so an explicit bf16 is not warned about; auto follows the measured
    # bf16 / fp32 matrix-product ratio (a Xeon measured 0.46, an EPYC 4.3)
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    monkeypatch.setattr(precision_mod, "cpu_bf16_gemm_speedup", lambda: 0.46)
    assert precision_mod.resolve_precision("auto", cpu) == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision_mod.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(precision_mod, "cpu_bf16_gemm_speedup", lambda: 4.3)
    assert precision_mod.resolve_precision("auto", cpu) == "bf16"
    assert precision_mod.resolve_precision("fp32", cpu) == "fp32"


def test_bf16_speedup_is_measured_once_per_host_and_cached(monkeypatch, tmp_path):
    measure = precision_mod.measure_bf16_gemm_speedup
    monkeypatch.setenv("SIMVAE_CACHE_DIR", str(tmp_path / "simvae"))
    precision_mod.cpu_bf16_gemm_speedup.cache_clear()
    monkeypatch.setattr(precision_mod, "measure_bf16_gemm_speedup", lambda: 2.5)
    try:
        assert precision_mod.cpu_bf16_gemm_speedup() == 2.5
        cache = json.loads((tmp_path / "simvae" / precision_mod.BF16_CACHE_FILE).read_text())
        assert [entry["speedup"] for entry in cache.values()] == [2.5]
        # another process on this host (a DDP rank, a resumed run) reads the cache, measures nothing
        precision_mod.cpu_bf16_gemm_speedup.cache_clear()
        monkeypatch.setattr(precision_mod, "measure_bf16_gemm_speedup", lambda: pytest.fail("measured twice"))
        assert precision_mod.cpu_bf16_gemm_speedup() == 2.5
    finally:
        precision_mod.cpu_bf16_gemm_speedup.cache_clear()
    # the measurement itself: a positive ratio of two real timings
    assert measure(size=64, repeats=2) > 0


def test_bf16_training_step_runs_and_is_recorded(tiny_data, tmp_path):
    cfg = {
        "train": {
            "dataset": "mnist",
            "data_dir": str(tiny_data),
            "download": False,
            "device": "cpu",
            "train_subset": 32,
            "views_per_step": 32,
            "epochs": 1,
            "precision": "bf16",
        },
        "method": {"n_views": 2},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # emulated on some hosts: slow, still correct
        summary = train(build_run_config(cfg), tmp_path / "run", progress=False)
    assert summary["precision"] == "bf16"
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(log[-1]["loss"])


def test_mlp_probe_hidden_defaults_to_representation_size():
    probe = make_probe("mlp", 10, 4)
    assert probe[0].out_features == 10 and isinstance(probe[1], torch.nn.ReLU)
    assert make_probe("mlp", 10, 4, 64)[0].out_features == 64


def test_joint_probes_equal_probes_trained_alone():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    fit, val, test = (x[:400], y[:400]), (x[400:500], y[400:500]), (x[500:], y[500:])
    joint = train_probes({"linear": "linear", "mlp": "mlp"}, *fit, *val, *test, 3, lr=1e-2, max_epochs=15, patience=3)
    for kind in ("linear", "mlp"):
        alone = train_probes({kind: kind}, *fit, *val, *test, 3, lr=1e-2, max_epochs=15, patience=3)[kind]
        assert joint[kind]["acc"] == alone["acc"] and joint[kind]["val_acc"] == alone["val_acc"]
        assert joint[kind]["epochs"] == alone["epochs"]
    fixed = train_probes({"linear": "linear"}, *fit, None, None, *test, 3, lr=1e-2, max_epochs=4)
    assert fixed["linear"]["epochs"] == 4 and fixed["linear"]["epochs_run"] == 4


def test_probe_heads_are_independent_under_adam():
    """Training two heads together moves each exactly as training it alone (disjoint parameters)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    a, b = make_probe("linear", 5, 3), make_probe("mlp", 5, 3)
    a_alone = make_probe("linear", 5, 3)
    a_alone.load_state_dict(a.state_dict())
    joint = torch.optim.Adam([*a.parameters(), *b.parameters()], lr=1e-2)
    alone = torch.optim.Adam(a_alone.parameters(), lr=1e-2)
    f = torch.nn.functional.cross_entropy
    for _ in range(5):
        joint.zero_grad()
        (f(a(x), y) + f(b(x), y)).backward()
        joint.step()
        alone.zero_grad()
        f(a_alone(x), y).backward()
        alone.step()
    for p, q in zip(a.parameters(), a_alone.parameters()):
        torch.testing.assert_close(p, q)


def test_gmm_accuracy_is_matched_on_the_scored_split():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 2)) * 6
    train_y = rng.integers(0, 3, 600)
    test_y = rng.integers(0, 3, 300)
    train_x = centres[train_y] + rng.normal(size=(600, 2))
    test_x = centres[test_y] + rng.normal(size=(300, 2))
    m = gmm_evaluate(train_x, train_y, test_x, test_y, 3, restarts=2, seed=0)
    assert m["gmm_acc"] >= m["gmm_acc_train_matched"]
    assert m["gmm_acc"] > 0.95
    # Hungarian matching on the scored split: a permuted clustering scores 1
    clusters = (test_y + 1) % 3
    mapping = match_clusters(clusters, test_y, 3)
    assert (mapping[clusters] == test_y).all()


def test_latent_encode_runs_in_eval_mode_and_restores_training():
    torch.manual_seed(0)
    m = build_method("simvae", ModelSpec((1, 28, 28), 4), {"n_views": 2})
    seen = []
    m.encoder.register_forward_pre_hook(lambda mod, inp: seen.append(mod.training))
    m.train()
    m.encode(torch.rand(3, 1, 28, 28))
    m.reconstruct(torch.rand(3, 1, 28, 28))
    assert seen == [False, False]
    assert m.training and m.encoder.training


def test_crvae_consumes_noise_in_the_order_drawn():
    """Image b's clean sample uses noise row (b, 0) and its augmentation row (b, 1) of the
    image-major draw, so a process's slice of the global draw stays its own."""
    torch.manual_seed(0)
    m = build_method("cr-vae", ModelSpec((1, 28, 28), 3), {})
    b = 4
    images = torch.rand(b, 1, 28, 28)
    noise = torch.randn(b * 2, 3)
    used = []
    m.sample = lambda mu, logvar, eps: used.append(eps) or mu
    m(Batch(images, images[:, None], lambda per_image, dim: noise))
    expect = torch.cat([noise.view(b, 2, 3)[:, 0], noise.view(b, 2, 3)[:, 1]])
    assert torch.equal(used[0], expect)


def test_binarised_data_gives_binary_training_views(tiny_data, tmp_path):
    """MNIST is binarised: its views are thresholded at 0.5 after the crop (the paper's code),
    so training views are binary like the test images; grey data keeps its grey levels."""
    from simvae.train import Trainer

    cfg = {
        "train": {
            "dataset": "mnist",
            "data_dir": str(tiny_data),
            "download": False,
            "device": "cpu",
            "train_subset": 32,
            "batch_size": 8,
            "epochs": 1,
        },
        "method": {"n_views": 4},
    }
    trainer = Trainer(build_run_config(cfg), tmp_path, progress=False)
    assert trainer.data.binarized and trainer.source.binarize
    views = trainer.make_batch(torch.arange(8)).views
    assert set(views.unique().tolist()) <= {0.0, 1.0}
    grey = dict(cfg, train={**cfg["train"], "binarize": False})
    trainer = Trainer(build_run_config(grey), tmp_path / "grey", progress=False)
    views = trainer.make_batch(torch.arange(8)).views
    assert not trainer.source.binarize and ((views > 0) & (views < 1)).any()


def test_linear_probe_learning_rate_is_chosen_on_validation():
    """The linear probe's lr comes from probe_lr x {1, 3, 10} by validation loss; off: probe_lr."""
    from simvae.evaluate import evaluate_representations
    from simvae.run_config import EvalConfig

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    cfg = EvalConfig(val_size=100, probe_max_epochs=3, gmm_restarts=1, knn_max_k=3)
    m = evaluate_representations(x[:500], y[:500], x[500:], y[500:], 3, cfg)
    assert any(m["linear_lr"] == pytest.approx(v) for v in (3e-4, 9e-4, 3e-3))
    fixed = evaluate_representations(
        x[:500],
        y[:500],
        x[500:],
        y[500:],
        3,
        EvalConfig(val_size=100, probe_max_epochs=3, gmm_restarts=1, knn_max_k=3, linear_lr_search=False),
    )
    assert fixed["linear_lr"] == 3e-4


def test_a_probe_that_runs_out_of_epochs_is_flagged():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, 4, generator=g)
    y = (x[:, 0] > 0).long()
    args = (x[:300], y[:300], x[300:350], y[300:350], x[350:], y[350:], 2)
    short = train_probes({"linear": "linear"}, *args, lr=1e-4, max_epochs=3, patience=50)["linear"]
    assert short["capped"] and short["epochs_run"] == 3  # still improving when the epochs ran out
    done = train_probes({"linear": "linear"}, *args, lr=5e-2, max_epochs=200, patience=2)["linear"]
    assert not done["capped"] and done["epochs_run"] < 200  # stopped by its patience
