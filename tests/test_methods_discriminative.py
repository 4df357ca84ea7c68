"""The discriminative baselines and the random encoder as methods: a forward/backward step on
a tiny batch, their representations, the training loop end to end, and post-hoc decoders."""

import math

import pytest
import torch

from simvae.errors import ConfigError
from simvae.evaluate.decoder_fit import fit_decoder
from simvae.methods import METHODS, Batch, ModelSpec, build_method
from simvae.run import load_decoder, save_decoder

SHAPE = ModelSpec((1, 8, 8), 4)
DISCRIMINATIVE = ["random", "simclr", "moco", "mocov2", "vicreg"]


def tiny_batch(b, j, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = torch.rand(b, j, *SHAPE.image_shape, generator=g)
    return Batch(views[:, 0].clone(), views, lambda per_image, dim: torch.randn(b * per_image, dim))


def test_registered():
    assert set(DISCRIMINATIVE) <= set(METHODS)
    assert not any(METHODS[name].generative for name in DISCRIMINATIVE)


@pytest.mark.parametrize("name", DISCRIMINATIVE)
def test_forward_backward_and_encode(name):
    torch.manual_seed(0)
    m = build_method(name, SHAPE, {})
    out = m(tiny_batch(6, m.n_views))
    assert out["loss"].ndim == 0 and all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    grads = [p.grad for p in m.trainable_parameters()]
    assert all(g is not None for g in grads)
    if name == "random":
        assert all(torch.count_nonzero(g) == 0 for g in grads)
    else:
        assert all(torch.count_nonzero(p.grad) > 0 for p in m.encoder.parameters())
    m.after_step()
    x = torch.rand(5, *SHAPE.image_shape)
    z = m.encode(x)
    assert z.shape == (5, SHAPE.latent_dim) and not z.requires_grad
    assert m.training  # encode switches to eval mode and back
    assert torch.equal(z, m.encoder.eval()(x).detach())
    assert m.reconstruct(x) is None


def test_encode_uses_eval_mode():
    """With BatchNorm in the encoder (the conv nets have it), encode uses running statistics."""
    m = build_method("simclr", SHAPE, {})
    m.encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4), torch.nn.BatchNorm1d(4))
    x = torch.rand(5, *SHAPE.image_shape)
    stats = m.encoder[2].running_mean.clone()
    z = m.encode(x)
    assert m.encoder.training and torch.equal(m.encoder[2].running_mean, stats)
    assert torch.equal(z, m.encoder.eval()(x).detach())


def test_simclr_and_vicreg_take_j_views():
    for name in ("simclr", "vicreg"):
        m = build_method(name, SHAPE, {"n_views": 3})
        assert m.n_views == 3
        assert torch.isfinite(m(tiny_batch(5, 3))["loss"])
        with pytest.raises(ConfigError):
            build_method(name, SHAPE, {"n_views": 1})


def test_defaults_follow_the_paper():
    assert build_method("simclr", SHAPE, {}).cfg.temperature == 0.7
    v = build_method("vicreg", SHAPE, {}).cfg
    assert (v.invariance_weight, v.variance_weight, v.covariance_weight) == (25.0, 25.0, 1.0)
    assert build_method("random", SHAPE, {}).n_views == 1
    with pytest.raises(ConfigError):
        build_method("simclr", SHAPE, {"temperature": -1})
    with pytest.raises(ConfigError):
        build_method("random", SHAPE, {"temperature": 0.5})


def test_vicreg_expander_batch_norm_sees_one_view_at_a_time():
    m = build_method("vicreg", SHAPE, {})
    batch = tiny_batch(6, 2)
    seen = []
    m.expander[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    m(batch)
    assert seen == [6, 6]


def test_random_encoder_is_left_untouched_by_the_loop():
    torch.manual_seed(0)
    m = build_method("random", SHAPE, {})
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam(m.trainable_parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        m(tiny_batch(4, 1))["loss"].backward()
        opt.step()
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_training_loop_end_to_end(tmp_path):
    from simvae.data import ImageData
    from simvae.run_config import build_run_config
    from simvae.train import train

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=g)
    data = ImageData(
        "fashion-mnist", images, torch.zeros(16, dtype=torch.long), images[:4], torch.zeros(4, dtype=torch.long), ["a"], "test"
    )
    for name in DISCRIMINATIVE:
        run = build_run_config(
            {
                "train": {"method": name, "batch_size": 8, "epochs": 1, "device": "cpu"},
                "method": {"queue_size": 12} if name.startswith("moco") else {},
            }
        )
        summary = train(run, tmp_path / name, data=data, progress=False)
        assert summary["steps"] == 2 and summary["method"] == name
        ckpt = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
        if name.startswith("moco"):
            assert int(ckpt["model"]["queue_ptr"]) == 4  # 2 steps x 8 keys through 12 slots

    from simvae.evaluate.decoder_fit import ensure_decoder
    from simvae.run import load_run

    run = load_run(tmp_path / "simclr", device="cpu", data=data)
    messages = []
    dec = ensure_decoder(run, log=messages.append, max_epochs=2, batch_size=4)
    assert (tmp_path / "simclr" / "decoder.pt").is_file() and "fitting" in messages[0]
    recon = run.reconstruct(images[:3])
    assert recon.shape == (3, 1, 8, 8)
    again = ensure_decoder(load_run(tmp_path / "simclr", device="cpu", data=data), log=messages.append)
    assert "loaded" in messages[-1] and all(torch.equal(a, b) for a, b in zip(dec.parameters(), again.parameters()))


def test_posthoc_decoder_fit_save_load(tmp_path):
    torch.manual_seed(0)
    m = build_method("simclr", SHAPE, {})
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, *SHAPE.image_shape), dtype=torch.uint8, generator=g)
    dec = fit_decoder(m.encode, images, SHAPE, "cpu", seed=0, lr=1e-3, batch_size=16, max_epochs=2, patience=2, progress=False)
    again = fit_decoder(m.encode, images, SHAPE, "cpu", seed=0, lr=1e-3, batch_size=16, max_epochs=2, patience=2, progress=False)
    z = m.encode(images.float() / 255)
    assert torch.equal(dec(z), again(z))  # seeded
    assert not dec.training and dec.val_mse < ((images.float() / 255 - 0.0) ** 2).mean()
    m.attach_decoder(dec)
    rec = m.reconstruct(images[:3].float() / 255)
    assert rec.shape == (3, *SHAPE.image_shape) and rec.min() >= 0 and rec.max() <= 1
    assert not any(k.startswith("posthoc") for k in m.state_dict())  # checkpoints are unchanged
    save_decoder(dec, tmp_path / "decoder.pt")
    loaded = load_decoder(tmp_path / "decoder.pt", SHAPE)
    assert torch.equal(loaded(z), dec(z))


def test_posthoc_decoder_keeps_the_best_epoch(monkeypatch):
    """Early stopping returns the weights of the epoch with the lowest validation MSE."""
    import simvae.evaluate.decoder_fit as df

    scores = iter([0.5, 0.3, 0.4, 0.6, 0.7])
    snapshots = []
    real_mse = df._mse

    def fake_mse(decoder, *args):
        real_mse(decoder, *args)
        snapshots.append({k: v.clone() for k, v in decoder.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(df, "_mse", fake_mse)
    images = torch.randint(0, 256, (10, *SHAPE.image_shape), dtype=torch.uint8)
    dec = df.fit_decoder(
        lambda x: x.flatten(1)[:, : SHAPE.latent_dim],
        images,
        SHAPE,
        "cpu",
        lr=1e-3,
        batch_size=16,
        max_epochs=10,
        patience=3,
        progress=False,
    )
    assert len(snapshots) == 5  # stopped 3 epochs after the best (epoch 2)
    assert all(torch.equal(v, snapshots[1][k]) for k, v in dec.state_dict().items())
    assert dec.val_mse == 0.3


def test_posthoc_decoder_reports_each_epoch_and_trains_in_bf16():
    """on_epoch sees every epoch's validation MSE and the best so far; bf16 autocast trains the
    decoder (weights stay fp32) to a finite validation MSE; a conv decoder is in channels_last."""
    spec = ModelSpec((3, 32, 32), 8, network="conv")
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    proj = torch.randn(3 * 32 * 32, 8, generator=torch.Generator().manual_seed(1)) / 55
    seen = []
    dec = fit_decoder(
        lambda x: x.flatten(1) @ proj,
        images,
        spec,
        "cpu",
        lr=1e-3,
        batch_size=16,
        max_epochs=3,
        patience=3,
        progress=False,
        precision="bf16",
        on_epoch=lambda *a: seen.append(a),
    )
    assert [(e, n) for e, n, _, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert all(best <= val for _, _, val, best in seen)
    assert [b for *_, b in seen] == sorted((b for *_, b in seen), reverse=True)  # the best never rises
    assert dec.val_mse == seen[-1][3] and math.isfinite(dec.val_mse)  # the best of the epochs
    assert all(p.dtype == torch.float32 for p in dec.parameters())
    assert dec.out.weight.is_contiguous(memory_format=torch.channels_last)


def test_progress_lines_are_throttled(monkeypatch):
    import simvae.evaluate.progress as progress

    clock = iter([0.0, 10.0, 31.0, 40.0, 62.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    lines = []
    tick = progress.every(30.0, lambda e, n, elapsed, *extra: lines.append((e, n, elapsed, extra)))
    for epoch in range(1, 5):
        tick(epoch, 9, f"x{epoch}")
    assert lines == [(2, 9, 31.0, ("x2",)), (4, 9, 62.0, ("x4",))]


@pytest.mark.parametrize(
    "train_precision, native, expected",
    [("auto", True, "bf16"), ("bf16", True, "bf16"), ("bf16", False, "fp32"), ("auto", False, "fp32"), ("fp32", True, "fp32")],
)
def test_posthoc_decoder_precision_follows_the_run_where_native(tmp_path, monkeypatch, train_precision, native, expected):
    """The decoder trains in bf16 only where the run asks for it (auto or bf16) and this device has
    it natively: never in emulated bf16 (a bf16 GPU run evaluated on an AVX2 CPU)."""
    from types import SimpleNamespace

    import simvae.evaluate.decoder_fit as df
    import simvae.hardware as hw
    from simvae.run_config import build_run_config

    seen = []
    monkeypatch.setattr(hw, "fast_bf16", lambda device: native)

    def fake_fit(*args, **kw):
        seen.append(kw["precision"])
        decoder = torch.nn.Linear(1, 1)
        decoder.val_mse, decoder.epochs = 0.1, 1
        return decoder

    monkeypatch.setattr(df, "fit_decoder", fake_fit)
    monkeypatch.setattr("simvae.run.save_decoder", lambda decoder, path: None)
    cfg = build_run_config({"train": {"method": "simclr", "precision": train_precision, "device": "cpu"}})
    method = build_method("simclr", SHAPE, {})
    images = torch.zeros(4, *SHAPE.image_shape, dtype=torch.uint8)
    data = SimpleNamespace(subset_train=lambda n: SimpleNamespace(train_images=images))
    run = SimpleNamespace(path=tmp_path, method=method, config=cfg, device=torch.device("cpu"), data=data)
    df.ensure_decoder(run, log=lambda m: None)
    assert seen == [expected]
