"""Batched augmentation: parameter distributions against torchvision's, and exactness."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torchvision import transforms
from torchvision.transforms import functional as TF

from simvae.augment import (
    GREY_AUGMENT,
    AugmentSpec,
    ViewParams,
    apply_views,
    augment,
    resize_matrices,
    sample_crop_boxes,
    sample_view_params,
)

SCALE, RATIO = (0.4, 1.0), (0.75, 1.3)
N = 20000


def torchvision_boxes(n: int, size: int = 28):
    torch.manual_seed(0)
    img = torch.zeros(1, size, size)
    boxes = [transforms.RandomResizedCrop.get_params(img, list(SCALE), list(RATIO)) for _ in range(n)]
    return np.array(boxes, dtype=np.float64)  # (i, j, h, w)


@pytest.fixture(scope="module")
def ours():
    g = torch.Generator().manual_seed(0)
    i, j, h, w = sample_crop_boxes(N, 28, 28, SCALE, RATIO, g)
    return np.stack([t.numpy() for t in (i, j, h, w)], 1).astype(np.float64)


@pytest.fixture(scope="module")
def reference():
    return torchvision_boxes(N)


def test_crop_area_distribution_matches_torchvision(ours, reference):
    area_ours = ours[:, 2] * ours[:, 3] / 784
    area_ref = reference[:, 2] * reference[:, 3] / 784
    assert stats.ks_2samp(area_ours, area_ref).pvalue > 1e-3
    # and the area fractions lie in the requested scale range (up to rounding of h, w)
    assert area_ours.min() >= SCALE[0] - 0.05 and area_ours.max() <= 1.0


def test_aspect_ratio_distribution_matches_torchvision(ours, reference):
    r_ours, r_ref = ours[:, 3] / ours[:, 2], reference[:, 3] / reference[:, 2]
    assert stats.ks_2samp(r_ours, r_ref).pvalue > 1e-3
    assert abs(np.log(r_ours).mean() - np.log(r_ref).mean()) < 0.01


def test_crop_positions_match_torchvision(ours, reference):
    for col in (0, 1):  # top, left offsets
        assert stats.ks_2samp(ours[:, col], reference[:, col]).pvalue > 1e-3
    assert (ours[:, 0] + ours[:, 2] <= 28).all() and (ours[:, 1] + ours[:, 3] <= 28).all()
    assert (ours[:, :2] >= 0).all()


def test_fallback_is_centre_crop_when_nothing_fits():
    # scale > 1 never fits in 10 attempts -> centre crop of the whole (square) image
    g = torch.Generator().manual_seed(0)
    i, j, h, w = sample_crop_boxes(100, 28, 28, (2.0, 3.0), RATIO, g)
    assert (h == 28).all() and (w == 28).all() and (i == 0).all() and (j == 0).all()


def test_flip_rate_matches_probability():
    g = torch.Generator().manual_seed(1)
    p = sample_view_params(1000, 10, (28, 28), GREY_AUGMENT, g)
    rate = p.vflip.float().mean().item()
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / 10000)
    p0 = sample_view_params(100, 10, (28, 28), AugmentSpec(vflip_p=0.0), g)
    assert not p0.vflip.any()


def _full(n, size=28, flip=False):
    z = torch.zeros(n, dtype=torch.long)
    return ViewParams(z, z, z + size, z + size, torch.full((n,), flip))


def test_full_crop_without_flip_is_identity():
    x = torch.rand(3, 1, 28, 28)
    out = apply_views(x, _full(3))
    assert out.shape == (3, 1, 1, 28, 28)
    torch.testing.assert_close(out[:, 0], x, atol=1e-5, rtol=0)


def test_full_crop_with_flip_is_vertical_flip():
    x = torch.rand(2, 1, 28, 28)
    out = apply_views(x, _full(2, flip=True))
    torch.testing.assert_close(out[:, 0], x.flip(-2), atol=1e-5, rtol=0)


def test_crop_matches_torchvision_resized_crop_inside_the_box():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 28, 28)
    i, j, h, w = 5, 3, 14, 17
    params = ViewParams(*(torch.tensor([v]) for v in (i, j, h, w)), torch.tensor([False]))
    ours = apply_views(x, params)[0, 0]
    ref = TF.resized_crop(x[0], i, j, h, w, [28, 28], antialias=False)
    # the whole view, border included: samples past the box edge repeat the box's edge pixels
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_crop_border_reads_only_the_box():
    # pixels outside the crop box never leak into the view (an upsampled box reads its own edge)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:20, 10:20] = 1.0
    params = ViewParams(*(torch.tensor([v]) for v in (10, 10, 10, 10)), torch.tensor([False]))
    assert torch.equal(apply_views(x, params)[0, 0], torch.ones(1, 28, 28))


def test_views_differ_and_are_reproducible_under_a_seed():
    x = torch.rand(4, 1, 28, 28)
    a = augment(x, 5, GREY_AUGMENT, torch.Generator().manual_seed(7))
    b = augment(x, 5, GREY_AUGMENT, torch.Generator().manual_seed(7))
    c = augment(x, 5, GREY_AUGMENT, torch.Generator().manual_seed(8))
    assert a.shape == (4, 5, 1, 28, 28)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.allclose(a[:, 0], a[:, 1])  # each view has its own parameters


def test_views_stay_with_their_image():
    # view j of image b is a crop of image b: constant images stay constant
    x = torch.stack([torch.full((1, 28, 28), v) for v in (0.1, 0.5, 0.9)])
    out = augment(x, 4, GREY_AUGMENT, torch.Generator().manual_seed(0))
    for b, v in enumerate((0.1, 0.5, 0.9)):
        torch.testing.assert_close(out[b], torch.full_like(out[b], v))


def per_view_reference(images: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Independent reference, one view at a time: crop the box, resize it with
    ``F.interpolate`` (bilinear, align_corners=False, no antialiasing), flip rows if asked."""
    b, c, hh, ww = images.shape
    n = len(params)
    out = []
    for k in range(n):
        t, l, h, w = (int(v[k]) for v in (params.top, params.left, params.height, params.width))
        crop = images[k // (n // b), :, t : t + h, l : l + w][None]
        view = F.interpolate(crop, size=(hh, ww), mode="bilinear", align_corners=False, antialias=False)[0]
        out.append(view.flip(-2) if bool(params.vflip[k]) else view)
    return torch.stack(out).view(b, n // b, c, hh, ww)


@pytest.mark.parametrize("channels", [1, 3])
def test_separable_views_equal_per_view_crop_and_resize(channels):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, channels, 28, 28, generator=g)
    params = sample_view_params(16, 6, (28, 28), GREY_AUGMENT, g)
    torch.testing.assert_close(apply_views(x, params), per_view_reference(x, params), atol=1e-5, rtol=0)


def test_resize_matrix_rows_are_interpolation_weights():
    g = torch.Generator().manual_seed(0)
    top, left, h, w = sample_crop_boxes(200, 28, 28, SCALE, RATIO, g)
    r = resize_matrices(top, h, 28)
    torch.testing.assert_close(r.sum(-1), torch.ones(200, 28))  # each output is a convex mix
    assert ((r > 0).sum(-1) <= 2).all()  # of at most two neighbouring input pixels
    assert torch.equal(resize_matrices(torch.zeros(1), torch.full((1,), 28), 28)[0], torch.eye(28))


def test_pipeline_of_operations_equals_the_fused_views():
    """Crop+flip then colour jitter as a list of operations draws and renders exactly what
    sample_view_params + apply_views do; slicing the parameters slices the views (DDP)."""
    from simvae.augment import COLOUR_AUGMENT, pipeline_for

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pipe = pipeline_for(COLOUR_AUGMENT)
    params = pipe.make_params(6 * 4, (16, 16), torch.Generator().manual_seed(5))
    fused = apply_views(x, sample_view_params(6, 4, (16, 16), COLOUR_AUGMENT, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(pipe(x, params), fused)
    torch.testing.assert_close(pipe(x[2:4], params[2 * 4 : 4 * 4]), fused[2:4])


def test_a_new_operation_is_one_class():
    from simvae.augment import Pipeline, pipeline_for

    class Invert:  # make_params + transform, nothing else
        def make_params(self, n, image_hw, generator, device="cpu"):
            return torch.rand(n, generator=generator) < 0.5

        def transform(self, x, params):
            flip = params.view(x.shape[0], x.shape[1], 1, 1, 1)
            return torch.where(flip, 1 - x, x)

    x = torch.rand(3, 1, 28, 28)
    pipe = Pipeline(pipeline_for(GREY_AUGMENT).ops + [Invert()])
    params = pipe.make_params(3 * 2, (28, 28), torch.Generator().manual_seed(1))
    plain = Pipeline(pipe.ops[:1])(x, type(params)([params[0]]))
    out = pipe(x, params)
    inv = params[1].view(3, 2)
    torch.testing.assert_close(out[inv], 1 - plain[inv])
    torch.testing.assert_close(out[~inv], plain[~inv])
