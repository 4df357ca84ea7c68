"""NT-Xent (SimCLR, J >= 2 views) and MoCo's InfoNCE against loops written from the formulas,
and the DDP gather: 2 processes give the gradients of 1 process on the same global batch."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_two_processes

from simvae.dist import gather_no_grad, gather_with_grad
from simvae.objectives.infonce import moco_infonce_loss, nt_xent_loss, positive_mask


def cos(u, v):
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def nt_xent_reference(z, t):
    """Loop over every anchor (image i, view a) and every positive (i, p != a)."""
    b, j = len(z), len(z[0])
    items = [(i, a) for i in range(b) for a in range(j)]
    terms = []
    for i, a in items:
        denom = sum(math.exp(cos(z[i][a], z[k][c]) / t) for k, c in items if (k, c) != (i, a))
        for p in range(j):
            if p != a:
                terms.append(-math.log(math.exp(cos(z[i][a], z[i][p]) / t) / denom))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("j", [2, 3])
def test_nt_xent_matches_loop(j):
    torch.manual_seed(j)
    z = torch.randn(5, j, 4, dtype=torch.float64)
    got = nt_xent_loss(z, 0.7).item()
    assert got == pytest.approx(nt_xent_reference(z.tolist(), 0.7), rel=1e-10)


def test_nt_xent_j2_is_simclr():
    """J = 2: the textbook SimCLR loss over 2b views, cross-entropy with the partner as target."""
    torch.manual_seed(0)
    b, t = 6, 0.5
    z = torch.randn(b, 2, 3, dtype=torch.float64)
    zz = F.normalize(torch.cat([z[:, 0], z[:, 1]]), dim=1)  # view-major: partner of row r is r +- b
    logits = (zz @ zz.T / t).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    assert nt_xent_loss(z, t).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-10)


def test_positive_pairs_are_views_of_the_same_image():
    b, j, t = 4, 2, 0.7
    aligned = torch.eye(b, dtype=torch.float64)[:, None, :].repeat(1, j, 1)  # views equal, images orthogonal
    exact = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (b * j - 2) * math.exp(0.0)))
    assert nt_xent_loss(aligned, t).item() == pytest.approx(exact, rel=1e-12)
    shuffled = aligned.clone()
    shuffled[:, 1] = aligned[torch.roll(torch.arange(b), 1), 1]  # second views moved to other images
    assert nt_xent_loss(shuffled, t).item() > nt_xent_loss(aligned, t).item() + 1.0
    mask = positive_mask(2, 3)
    assert mask.sum() == 2 * 3 * 2 and mask[0, 1] and mask[0, 2] and not mask[0, 0] and not mask[0, 3]


def test_nt_xent_invariant_to_image_order_and_view_order():
    torch.manual_seed(1)
    z = torch.randn(7, 3, 5, dtype=torch.float64)
    base = nt_xent_loss(z, 0.7)
    perm = torch.randperm(7)
    assert nt_xent_loss(z[perm], 0.7).item() == pytest.approx(base.item(), rel=1e-12)
    assert nt_xent_loss(z[:, [2, 0, 1]], 0.7).item() == pytest.approx(base.item(), rel=1e-12)
    broken = z.clone()
    broken[:, 0] = z[perm, 0]  # views no longer kept together: a different loss
    assert nt_xent_loss(broken, 0.7).item() != pytest.approx(base.item(), rel=1e-6)


def test_nt_xent_depends_on_temperature_and_refuses_one_view():
    z = torch.randn(4, 2, 3)
    assert nt_xent_loss(z, 0.2).item() != pytest.approx(nt_xent_loss(z, 0.7).item())
    with pytest.raises(ValueError):
        nt_xent_loss(z[:, :1], 0.7)


def test_moco_infonce_matches_loop():
    torch.manual_seed(2)
    q, k, queue, t = (
        torch.randn(5, 4, dtype=torch.float64),
        torch.randn(5, 4, dtype=torch.float64),
        torch.randn(9, 4, dtype=torch.float64),
        0.2,
    )
    ref = 0.0
    for i in range(5):
        pos = math.exp(cos(q[i].tolist(), k[i].tolist()) / t)
        neg = sum(math.exp(cos(q[i].tolist(), n.tolist()) / t) for n in queue)
        ref += -math.log(pos / (pos + neg)) / 5
    assert moco_infonce_loss(q, k, queue, t).item() == pytest.approx(ref, rel=1e-10)


def test_gather_is_identity_on_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert torch.equal(gather_no_grad(x), x) and not gather_no_grad(x).requires_grad


# -- DDP: 2 processes (gloo, CPU) against 1 process on the same global batch ---------------------


def _global_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, 6, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 5)
    return x, model


def _losses(model, x):
    from simvae.objectives.vicreg import vicreg_loss

    z = gather_with_grad(model(x))
    return {"simclr": nt_xent_loss(z, 0.7), "vicreg": vicreg_loss(z)["loss"]}


def _ddp_worker(rank, world, init_file, out_file):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, model = _global_problem()
        ddp = DistributedDataParallel(model)
        b = x.shape[0] // world
        local = x[rank * b : (rank + 1) * b]
        result = {}
        for name in ("simclr", "vicreg"):
            ddp.zero_grad()
            loss = _losses(ddp, local)[name]
            loss.backward()
            result[name] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
        result["keys"] = gather_no_grad(local[:, 0] + rank * 0)
        if rank == 0:
            torch.save(result, out_file)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_gradients_of_one(tmp_path):
    got = run_two_processes(_ddp_worker, tmp_path)
    x, model = _global_problem()
    for name in ("simclr", "vicreg"):
        model.zero_grad()
        loss = _losses(model, x)[name]
        loss.backward()
        assert got[name][0].item() == pytest.approx(loss.item(), rel=1e-5)
        for g_ddp, p in zip(got[name][1], model.parameters()):
            torch.testing.assert_close(g_ddp, p.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got["keys"], x[:, 0])  # rank order = global batch order
