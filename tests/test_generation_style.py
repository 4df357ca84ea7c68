"""Generation (class-conditional Gaussians, traversal), the Fréchet distances, style retrieval and
probes of several targets (joint probes)."""

import json

import pytest
import torch
from conftest import TINY_EVAL_ARGS, run_cli, tiny_train_args

from simvae.augment.spec import COLOUR_AUGMENT, GREY_AUGMENT
from simvae.config import parse_config
from simvae.errors import ConfigError
from simvae.evaluate import evaluate_targets
from simvae.evaluate.fid import ClassifierFeatures, SmallClassifier, frechet_distance
from simvae.evaluate.generation import fit_class_gaussians, latent_traversal, sample_class_gaussians
from simvae.evaluate.probes import train_probes
from simvae.evaluate.registry import evaluator_names
from simvae.evaluate.style import augmented_representations, chance, style_targets
from simvae.run_config import EvalConfig

FAST = dict(val_size=64, knn_max_k=5, probe_max_epochs=30, probe_patience=5, gmm_restarts=1, map_points=0)


def test_class_gaussians_recover_the_generating_means_and_covariances():
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[2.0, 0.0], [1.5, 0.5]])
    z0 = torch.randn(4000, 2, generator=g) @ a.T + torch.tensor([5.0, -3.0])
    z1 = torch.randn(4000, 2, generator=g) * 0.3
    means, covs = fit_class_gaussians(torch.cat([z0, z1]), torch.cat([torch.zeros(4000), torch.ones(4000)]).long(), 2)
    assert torch.allclose(means[0].float(), torch.tensor([5.0, -3.0]), atol=0.1)
    assert torch.allclose(covs[0].float(), a @ a.T, atol=0.2)
    assert torch.allclose(covs[1].float(), 0.09 * torch.eye(2), atol=0.02)
    z, labels = sample_class_gaussians(means, covs, 5000, seed=1)
    assert z.shape == (10000, 2) and labels.tolist() == [0] * 5000 + [1] * 5000
    assert torch.allclose(torch.cov(z[:5000].T), (a @ a.T), atol=0.3)
    assert torch.equal(z, sample_class_gaussians(means, covs, 5000, seed=1)[0])  # seeded


def test_class_gaussian_needs_two_points_per_class():
    with pytest.raises(ValueError, match="class 1 has 1"):
        fit_class_gaussians(torch.randn(5, 3), torch.tensor([0, 0, 0, 0, 1]), 2)


def test_latent_traversal_centre_column_decodes_the_mean():
    z = torch.randn(500, 6) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    frames = latent_traversal(lambda v: v.view(-1, 1, 2, 3), z, 3, (-2.0, 0.0, 2.0))
    assert frames.shape == (3, 3, 1, 2, 3)
    assert torch.allclose(frames[:, 1].reshape(3, 6), z.mean(0).expand(3, 6), atol=1e-5)
    step = (frames[0, 2] - frames[0, 1]).reshape(6)  # the first direction is the largest-variance axis
    assert step.abs().argmax() == 0 and abs(float(step.norm()) - 2 * float(z[:, 0].std())) < 0.5


def _classifier_features():
    torch.manual_seed(0)
    net = SmallClassifier(1, (28, 28), 10)
    return ClassifierFeatures(net, "untrained-test-net", 0.0)


def test_frechet_distance_is_zero_on_itself_and_grows_with_noise():
    feats = _classifier_features()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(150, 1, 28, 28, generator=g) * 0.5
    assert abs(frechet_distance(feats, images, images, cache=False)) < 1e-3
    noise = torch.randn(images.shape, generator=g)
    fids = [frechet_distance(feats, images, (images + s * noise).clamp(0, 1), cache=False) for s in (0.05, 0.2, 0.5)]
    assert fids[0] < fids[1] < fids[2], fids


def test_frechet_distance_reuses_cached_reference_statistics():
    feats = _classifier_features()
    real, fake = torch.rand(50, 1, 28, 28), torch.rand(50, 1, 28, 28)
    first = frechet_distance(feats, real, fake)
    calls = []
    feats.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    assert frechet_distance(feats, real, fake) == pytest.approx(first, rel=1e-6)
    assert sum(calls) == 50  # only the generated images went through the network


def test_style_targets_follow_the_drawn_parameters():
    images = (torch.rand(400, 1, 28, 28) * 255).to(torch.uint8)
    _, train_v = augmented_representations(lambda x: x.flatten(1), images, GREY_AUGMENT, False, seed=1)
    _, test_v = augmented_representations(lambda x: x.flatten(1), images[:200], GREY_AUGMENT, False, seed=2)
    targets = {t.name: t for t in style_targets(train_v, test_v, bins=4)}
    assert set(targets) == {"style/flip", "style/crop_scale", "style/crop_centre"}
    assert torch.equal(targets["style/flip"].train, train_v["flip"])
    counts = torch.bincount(targets["style/crop_scale"].train, minlength=4)
    assert counts.min() >= 80  # equal-mass bins on the training draws
    assert targets["style/crop_centre"].n_classes == 9 and int(targets["style/crop_centre"].train.max()) <= 8
    # a constant representation is at chance on every style target
    const = torch.zeros(400, 3)
    m = evaluate_targets(const, torch.zeros(200, 3), list(targets.values()), EvalConfig(**FAST), skip=("gmm", "probes"))
    for name, t in targets.items():
        assert m[f"{name}/knn_acc"] <= chance(t) + 0.08


def test_colour_style_targets_include_jitter_and_an_equivariant_encoder_retrieves_flip():
    images = torch.zeros(600, 3, 16, 16, dtype=torch.uint8)
    images[:, :, :6] = 255  # bright top band: a vertical flip moves it to the bottom

    def encode(x):
        return torch.stack([x[:, :, :8].mean((1, 2, 3)), x[:, :, 8:].mean((1, 2, 3))], 1)

    tr_x, tr_v = augmented_representations(encode, images, COLOUR_AUGMENT, False, seed=1)
    te_x, te_v = augmented_representations(encode, images[:300], COLOUR_AUGMENT, False, seed=2)
    targets = style_targets(tr_v, te_v)
    assert {"style/brightness", "style/contrast", "style/saturation", "style/hue"} <= {t.name for t in targets}
    hue = next(t for t in targets if t.name == "style/hue")
    assert hue.n_classes == 5 and torch.equal(hue.train == 0, ~tr_v["jitter_applied"])  # class 0: not jittered
    assert 0.1 < float((hue.train == 0).float().mean()) < 0.3 and int(hue.train.max()) == 4
    assert all(t.train.shape == (600,) and t.test.shape == (300,) for t in targets)  # one label per view
    flip = next(t for t in targets if t.name == "style/flip")
    m = evaluate_targets(tr_x, te_x, [flip], EvalConfig(**FAST), skip=("gmm", "probes"))
    assert m["style/flip/knn_acc"] > 0.9 > chance(flip) + 0.3


def test_probes_of_several_targets_train_together_and_skip_missing_labels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 4, generator=g)
    y0 = (x[:, 0] > 0).long()
    y1 = (x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()
    y1_missing = y1.clone()
    y1_missing[::2] = -1  # half the images have no label for target 1
    y = torch.stack([y0, y1_missing], 1)
    heads = {"a": ("linear", 1e-2, 0), "b": ("mlp", 1e-2, 1)}
    out = train_probes(
        heads, x[:1500], y[:1500], x[1500:1800], y[1500:1800], x[1800:], y[1800:], [2, 4], max_epochs=30, patience=5, hidden=16
    )
    assert out["a"]["acc"] > 0.95 and out["b"]["acc"] > 0.85
    # the same head trained alone on the same rows follows the same trajectory
    alone = train_probes(
        {"b": ("mlp", 1e-2, 1)},
        x[:1500],
        y[:1500],
        x[1500:1800],
        y[1500:1800],
        x[1800:],
        y[1800:],
        [2, 4],
        max_epochs=30,
        patience=5,
        hidden=16,
    )
    assert alone["b"]["acc"] == out["b"]["acc"] and alone["b"]["epochs"] == out["b"]["epochs"]


def test_skip_names_are_the_registered_evaluators_and_unknown_ones_are_refused():
    from simvae.evaluate import check_evaluator_names

    assert evaluator_names() == ["knn", "probes", "gmm", "reconstruction", "generation", "style"]
    check_evaluator_names(evaluator_names())
    with pytest.raises(ConfigError, match="unknown evaluator 'stlye'.*did you mean 'style'"):
        check_evaluator_names(parse_config(EvalConfig, {"skip": ["stlye"]}).skip)


@pytest.mark.slow
def test_evaluate_writes_generation_and_style_and_skip_leaves_them_out(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", *tiny_train_args(tiny_data, "--out", str(out), "--no-eval"))
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", str(out), *TINY_EVAL_ARGS, "--gen-samples", "100", "--fid-samples", "0")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["gen_samples"] == 100 and m["classifier_fid"] > 0 and "fid" not in m
    assert "Inception FID off on the CPU" in r.stderr
    for name in ("flip", "crop_scale", "crop_centre"):
        assert 0 <= m[f"style/{name}/mlp_acc"] <= 1 and 0 < m[f"style/{name}/chance"] <= 1
    for fig in ("samples.png", "augmentations.png", "traversal.png"):
        assert (out / fig).stat().st_size > 1000
    assert "samples.png" in (out / "report.md").read_text()
    r = run_cli("evaluate", str(out), *TINY_EVAL_ARGS, "--skip", "generation,style")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert not any(k.startswith("style/") or "fid" in k for k in m) and "recon_mse" in m


@pytest.mark.slow
def test_inception_fid_of_a_set_against_itself_is_zero():
    from simvae.evaluate.fid import InceptionFeatures

    net = InceptionFeatures()
    images = (torch.rand(6, 1, 28, 28) * 255).to(torch.uint8)
    assert net(images[:2].float() / 255).shape == (2, 2048)
    assert abs(frechet_distance(net, images, images, cache=False)) < 1e-2


def test_a_head_without_validation_labels_trains_fixed_epochs_and_reports_nan():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=g)
    y = torch.stack([(x[:, 0] > 0).long(), (x[:, 1] > 0).long()], 1)
    val_y, test_y = y[800:900].clone(), y[900:].clone()
    val_y[:, 1] = -1
    test_y[:, 1] = -1
    out = train_probes(
        {"a": ("linear", 1e-2, 0), "b": ("linear", 1e-2, 1)},
        x[:800],
        y[:800],
        x[800:900],
        val_y,
        x[900:],
        test_y,
        2,
        max_epochs=8,
        patience=2,
    )
    assert out["a"]["acc"] > 0.9 and out["a"]["val_loss"] == out["a"]["val_loss"]
    b = out["b"]
    assert b["epochs"] == 8 and b["val_acc"] is None and b["val_loss"] != b["val_loss"] and b["acc"] != b["acc"]


def test_samples_follow_the_class_prior_and_rare_classes_do_not_crash():
    from simvae.evaluate.generation import class_conditional_samples, class_counts

    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 10 + [-1] * 5)
    assert class_counts(y, 3, 100) == [70, 20, 10] and sum(class_counts(y, 3, 7)) == 7
    z = torch.randn(len(y), 3)
    images, labels = class_conditional_samples(lambda v: v.view(-1, 1, 1, 3), z, y, 3, class_counts(y, 3, 50))
    assert images.shape == (50, 1, 1, 3) and torch.bincount(labels).tolist() == [35, 10, 5]
    with pytest.raises(ValueError):
        class_conditional_samples(lambda v: v, z[:3], torch.tensor([0, 0, 1]), 2, 5)
