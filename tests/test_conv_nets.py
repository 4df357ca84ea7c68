"""Conv encoder / decoder (paper Table 4): shapes stage by stage, both input sizes, errors."""

import pytest
import torch

from simvae.methods import Batch, ModelSpec, build_method
from simvae.nets import build_decoder, build_encoder
from simvae.nets.conv import ResidualBlock


def _stage_shapes(net, x):
    shapes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for m in net.modules() if isinstance(m, ResidualBlock)
    ]
    out = net(x)
    for h in hooks:
        h.remove()
    return shapes, out


@pytest.mark.parametrize("size, stem", [(64, 32), (32, 32)])
def test_encoder_stages_follow_table_4(size, stem):
    enc = build_encoder("conv", (3, size, size), 64)
    shapes, out = _stage_shapes(enc, torch.rand(2, 3, size, size))
    # conv2_x .. conv5_x: 32 ch at the stem's resolution, then 64, 128, 256 halving each time
    assert shapes == [(32, stem, stem), (64, stem // 2, stem // 2), (128, stem // 4, stem // 4), (256, 4, 4)]
    assert enc.fc.in_features == 4096 and out.shape == (2, 64)


@pytest.mark.parametrize(
    "size, stages", [(64, [(128, 8, 8), (64, 16, 16), (32, 32, 32), (16, 64, 64)]), (32, [(128, 8, 8), (64, 16, 16), (32, 32, 32)])]
)
def test_decoder_stages_follow_table_4(size, stages):
    dec = build_decoder("conv", (3, size, size), 64)
    shapes, out = _stage_shapes(dec, torch.randn(2, 64))
    assert shapes == stages
    assert out.shape == (2, 3, size, size)
    assert dec.fc.out_features == 256 * 4 * 4 and dec.out.kernel_size == (5, 5)


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 32, 64), (1, 48, 48)])
def test_unsupported_image_size_is_a_clear_error(shape):
    with pytest.raises(ValueError, match="32x32 or 64x64"):
        build_encoder("conv", shape, 64)
    with pytest.raises(ValueError, match="32x32 or 64x64"):
        build_decoder("conv", shape, 64)


def test_unknown_network_family_names_the_choices():
    with pytest.raises(ValueError, match="mlp, conv"):
        build_encoder("transformer", (3, 32, 32), 64)


def test_simvae_trains_with_conv_nets():
    """One SimVAE step with the conv nets: finite loss, every parameter gets a gradient, loss drops."""
    torch.manual_seed(0)
    method = build_method("simvae", ModelSpec((3, 32, 32), 16, "conv"), {"n_views": 3})
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    views = torch.rand(4, 3, 3, 32, 32)
    batch = Batch(views[:, 0], views, lambda per_image, dim: torch.randn(4 * per_image, dim))
    losses = []
    for _ in range(5):
        loss = method(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        if not losses:
            missing = [n for n, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, f"no gradient reached {missing}"
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    method.eval()
    assert method.encode(views[:, 0]).shape == (4, 16)
    assert method.reconstruct(views[:, 0]).shape == (4, 3, 32, 32)


def test_resumed_optimizer_state_takes_the_parameters_layout():
    """A checkpoint's Adam state saved with contiguous conv weights, resumed into channels_last
    weights (the layout rule of another version): after the fix-up, fused Adam steps exactly as
    it would have without the change of layout."""
    from simvae.train.loop import _match_state_layout

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    grads = [torch.randn_like(conv.weight) for _ in range(3)]
    ref = torch.nn.Conv2d(3, 4, 3)
    ref.load_state_dict(conv.state_dict())

    def step(module, opt, g):
        module.weight.grad, module.bias.grad = g.contiguous(memory_format=module.weight_format), torch.ones(4)
        opt.step()

    ref.weight_format = conv.weight_format = torch.contiguous_format
    opt_ref = torch.optim.Adam(ref.parameters(), lr=0.1, fused=True)
    opt = torch.optim.Adam(conv.parameters(), lr=0.1, fused=True)
    step(ref, opt_ref, grads[0]), step(conv, opt, grads[0])
    saved = opt.state_dict()  # contiguous state, as an older checkpoint holds it
    conv.to(memory_format=torch.channels_last)
    conv.weight_format = torch.channels_last
    resumed = torch.optim.Adam(conv.parameters(), lr=0.1, fused=True)
    resumed.load_state_dict(saved)
    _match_state_layout(resumed)
    state = resumed.state[conv.weight]
    assert state["exp_avg"].stride() == conv.weight.stride() == state["exp_avg_sq"].stride()
    for g in grads[1:]:
        step(ref, opt_ref, g), step(conv, resumed, g)
    assert torch.allclose(conv.weight, ref.weight, atol=1e-6)
