"""ELBO terms against brute-force evaluations of their formulas."""

import math

import pytest
import torch
from conftest import float32_default
from torch.distributions import Bernoulli, MultivariateNormal, Normal, kl_divergence

from simvae.methods import Batch, ModelSpec, build_method
from simvae.objectives.elbo import (
    bernoulli_log_likelihood,
    gaussian_entropy,
    gaussian_log_likelihood,
    group_log_prior_gaussian,
    group_log_prior_uniform,
    kl_gaussians,
    kl_standard_normal,
    reparameterize,
)


@pytest.fixture(autouse=True, scope="module")
def _float64_here():
    """Brute-force references in float64, for this module only."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_gaussian_log_likelihood_is_normal_log_prob():
    x, mean = torch.rand(5, 1, 4, 4), torch.rand(5, 1, 4, 4)
    ref = Normal(mean, math.sqrt(0.02)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.02), ref)


def test_bernoulli_log_likelihood_is_bernoulli_log_prob():
    x = (torch.rand(5, 1, 4, 4) > 0.5).double()
    logits = torch.randn(5, 1, 4, 4)
    ref = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), ref)


def test_entropy_is_gaussian_entropy():
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    ref = Normal(mu, (0.5 * logvar).exp()).entropy().sum(1)
    torch.testing.assert_close(gaussian_entropy(logvar), ref)
    # not the public reference code's 0.5 * sum(2 * pi * logvar)
    assert not torch.allclose(gaussian_entropy(logvar), 0.5 * (2 * math.pi * logvar).sum(1))


def test_kl_terms_match_torch_distributions():
    mq, lq, mp, lp = (torch.randn(7, 4) for _ in range(4))
    q, p = Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp())
    torch.testing.assert_close(kl_gaussians(mq, lq, mp, lp), kl_divergence(q, p).sum(1))
    std = Normal(torch.zeros_like(mq), torch.ones_like(mq))
    torch.testing.assert_close(kl_standard_normal(mq, lq), kl_divergence(q, std).sum(1))


def _integrate_over_psi(z_1d: torch.Tensor, s2: float, log_p_psi) -> float:
    """log of int p(psi) prod_j N(z_j; psi, s2) dpsi, by the trapezoid rule on a fine grid."""
    psi = torch.linspace(-30, 30, 600001)
    logs = log_p_psi(psi) + Normal(psi[:, None], math.sqrt(s2)).log_prob(z_1d[None, :]).sum(1)
    m = logs.max()
    return float(m + torch.log(torch.trapezoid((logs - m).exp(), psi)))


def test_uniform_group_prior_equals_integral_over_psi():
    torch.manual_seed(0)
    z = torch.randn(1, 5, 3) * 0.5  # one group, J=5, L=3 (dimensions factorise)
    s2 = 0.15
    brute = sum(_integrate_over_psi(z[0, :, l], s2, lambda psi: torch.zeros_like(psi)) for l in range(3))
    assert float(group_log_prior_uniform(z, s2)[0]) == pytest.approx(brute, abs=1e-6)


def test_uniform_group_prior_quadratic_form():
    z = torch.randn(4, 6, 3)
    zbar = z.mean(1, keepdim=True)
    quad = sum(((z[:, j] - zbar[:, 0]) ** 2).sum(-1) for j in range(6))
    a, b = group_log_prior_uniform(z, 0.15), group_log_prior_uniform(torch.zeros_like(z), 0.15)
    torch.testing.assert_close(a - b, -quad / (2 * 0.15))


def test_gaussian_group_prior_equals_integral_and_mvn():
    torch.manual_seed(1)
    z = torch.randn(2, 4, 3)
    s2, g2 = 0.15, 2.0
    log_p_psi = lambda psi: Normal(0.0, math.sqrt(g2)).log_prob(psi)  # noqa: E731
    brute = sum(_integrate_over_psi(z[0, :, l], s2, log_p_psi) for l in range(3))
    assert float(group_log_prior_gaussian(z, s2, g2)[0]) == pytest.approx(brute, abs=1e-6)
    cov = s2 * torch.eye(4) + g2 * torch.ones(4, 4)
    mvn = MultivariateNormal(torch.zeros(4), cov)
    ref = mvn.log_prob(z.transpose(1, 2)).sum(-1)  # per latent dim, J-vector ~ N(0, s2 I + g2 11^T)
    torch.testing.assert_close(group_log_prior_gaussian(z, s2, g2), ref)


def test_gaussian_prior_tends_to_uniform_as_psi_variance_grows():
    z1, z2 = torch.randn(1, 5, 3), torch.randn(1, 5, 3)
    d_uniform = group_log_prior_uniform(z1, 0.15) - group_log_prior_uniform(z2, 0.15)
    d_gauss = group_log_prior_gaussian(z1, 0.15, 1e8) - group_log_prior_gaussian(z2, 0.15, 1e8)
    torch.testing.assert_close(d_gauss, d_uniform, atol=1e-5, rtol=0)


def test_uniform_prior_is_invariant_to_shifting_a_group():
    z = torch.randn(3, 10, 4)
    shift = torch.randn(3, 1, 4) * 5
    torch.testing.assert_close(group_log_prior_uniform(z + shift, 0.15), group_log_prior_uniform(z, 0.15))


def test_prior_gradient_pulls_latents_to_their_group_mean():
    z = torch.randn(3, 10, 4, requires_grad=True)
    group_log_prior_uniform(z, 0.15).sum().backward()
    zbar = z.detach().mean(1, keepdim=True)
    # d/dz^j log p = -(z^j - zbar) / s^2: the ascent direction points to the group mean
    torch.testing.assert_close(z.grad, -(z.detach() - zbar) / 0.15)
    moved = z.detach() + 0.01 * z.grad
    assert ((moved - zbar).norm(dim=-1) < (z.detach() - zbar).norm(dim=-1)).all()


def test_reparameterize():
    mu, logvar, eps = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(reparameterize(mu, logvar, eps), mu + logvar.exp().sqrt() * eps)


def _batch(b, j, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = torch.rand(b, j, 1, 28, 28, generator=g)
    noise = torch.randn(b * j * 2, 10, generator=g)
    images = torch.rand(b, 1, 28, 28, generator=g)
    return Batch(images, views, lambda per, dim: noise[: b * per, :dim])


def test_simvae_loss_is_minus_the_sum_of_its_terms():
    with float32_default():
        m = build_method("simvae", ModelSpec((1, 28, 28), 10))
        batch = _batch(3, 4)
        out = m(batch)
        x = batch.views.flatten(0, 1)
        mu, logvar = m.posterior(x)
        z = mu + (0.5 * logvar).exp() * batch.randn(4, 10)
        ll = gaussian_log_likelihood(x, m.decoder(z), 0.02).view(3, 4).sum(1)
        ent = gaussian_entropy(logvar).view(3, 4).sum(1)
        prior = group_log_prior_uniform(z.view(3, 4, 10), 0.15)
        torch.testing.assert_close(out["loss"], -(ll + ent + prior).mean())
        torch.testing.assert_close(out["log_prior"], prior.mean())


def test_cr_vae_consistency_is_kl_of_augmented_from_original():
    with float32_default():
        m = build_method("cr-vae", ModelSpec((1, 28, 28), 10))
        batch = _batch(5, 1)
        out = m(batch)
        mu_x, lv_x = m.posterior(batch.images)
        mu_t, lv_t = m.posterior(batch.views[:, 0])
        q_t, q_x = Normal(mu_t, (0.5 * lv_t).exp()), Normal(mu_x, (0.5 * lv_x).exp())
        forward = kl_divergence(q_t, q_x).sum(1).mean()
        reverse = kl_divergence(q_x, q_t).sum(1).mean()
        torch.testing.assert_close(out["consistency"], forward, rtol=1e-4, atol=1e-5)
        assert not torch.isclose(out["consistency"], reverse, rtol=1e-3)


def test_beta_vae_weights_the_kl():
    with float32_default():
        torch.manual_seed(0)
        m1 = build_method("vae", ModelSpec((1, 28, 28), 10))
        m4 = build_method("beta-vae", ModelSpec((1, 28, 28), 10), {"beta": 4.0})
        m4.load_state_dict(m1.state_dict())
        b = _batch(4, 1)
        o1, o4 = m1(b), m4(b)
        torch.testing.assert_close(o4["loss"] - o1["loss"], 3.0 * o1["kl"])
