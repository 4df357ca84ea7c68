"""Batched colour jitter against torchvision's functional ops, one view at a time."""

import math

import pytest
import torch
from torchvision.transforms import functional as TF

from simvae.augment import AugmentSpec, JitterParams, apply_views, colour_jitter, sample_jitter, sample_view_params
from simvae.augment.colour import OPS, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, hsv_to_rgb, rgb_to_hsv

TV = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast, "saturation": TF.adjust_saturation, "hue": TF.adjust_hue}
OURS = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation, "hue": adjust_hue}


@pytest.fixture
def images():
    return torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("op", OPS)
def test_each_operation_matches_torchvision(images, op):
    factors = torch.tensor([0.2, 0.5, 0.9, 1.0, 1.4, 1.8]) if op != "hue" else torch.tensor([-0.2, -0.1, 0.0, 0.05, 0.15, 0.2])
    ours = OURS[op](images.clone(), factors)
    for i in range(len(images)):  # the reference: torchvision, one image and one factor at a time
        torch.testing.assert_close(ours[i], TV[op](images[i], float(factors[i])), atol=2e-5, rtol=0)


def test_hsv_round_trip_and_known_colours():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    pure = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]]).view(4, 3, 1, 1)
    hsv = rgb_to_hsv(pure).view(4, 3)
    torch.testing.assert_close(hsv[:, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 0.0]))  # hues of red, green, blue, grey
    torch.testing.assert_close(hsv[:, 1], torch.tensor([1.0, 1.0, 1.0, 0.0]))


@pytest.mark.parametrize("masked", [False, True])  # the CPU (row subsets) and GPU (torch.where) paths
def test_jitter_applies_each_views_own_order(images, masked):
    g = torch.Generator().manual_seed(2)
    params = sample_jitter(len(images), 0.8, 0.2, 1.0, g)
    params.apply[1] = False
    ours = colour_jitter(images, params, masked=masked)
    for i in range(len(images)):
        ref = images[i]
        if params.apply[i]:
            for op in params.order[i].tolist():
                ref = TV[OPS[op]](ref, float(params.factors[i, op]))
        torch.testing.assert_close(ours[i], ref, atol=5e-5, rtol=0)
    assert torch.equal(ours[1], images[1])  # not applied: unchanged
    # the order matters (so following it is tested above): brightness then contrast != contrast then brightness
    f = torch.tensor([1.7])
    a = adjust_contrast(adjust_brightness(images[:1].clone(), f), torch.tensor([0.3]))
    b = adjust_brightness(adjust_contrast(images[:1].clone(), torch.tensor([0.3])), f)
    assert not torch.allclose(a, b, atol=1e-3)


def test_jitter_draws_follow_colorjitter():
    n, s, h, p = 40000, 0.8, 0.2, 0.8
    params = sample_jitter(n, s, h, p, torch.Generator().manual_seed(3))
    assert abs(params.apply.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    f = params.factors
    assert f[:, :3].min() >= 1 - s and f[:, :3].max() <= 1 + s and abs(f[:, :3].mean().item() - 1.0) < 0.01
    assert f[:, 3].min() >= -h and f[:, 3].max() <= h and abs(f[:, 3].mean().item()) < 0.005
    assert torch.equal(params.order.sort(dim=1).values, torch.arange(4).expand(n, 4))  # permutations
    share = torch.stack([(params.order[:, pos] == op).float().mean() for pos in range(4) for op in range(4)])
    assert (share - 0.25).abs().max() < 0.015  # every op equally likely at every position


def test_colour_spec_jitters_views_and_grey_spec_does_not():
    g = torch.Generator().manual_seed(4)
    colour = AugmentSpec(crop_scale=(0.6, 1.0), jitter_strength=0.8, jitter_hue=0.2, jitter_p=0.8)
    params = sample_view_params(3, 4, (16, 16), colour, g)
    assert isinstance(params.jitter, JitterParams) and len(params[:4].jitter.apply) == 4
    x = torch.rand(3, 3, 16, 16, generator=g)
    views = apply_views(x, params)
    assert views.shape == (3, 4, 3, 16, 16) and views.min() >= 0 and views.max() <= 1
    assert sample_view_params(3, 4, (16, 16), AugmentSpec(), g).jitter is None
    with pytest.raises(ValueError, match="RGB"):
        colour_jitter(torch.rand(2, 1, 4, 4), sample_jitter(2, 0.8, 0.2, 1.0, g))
