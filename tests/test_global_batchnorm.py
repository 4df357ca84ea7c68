"""GlobalBatchNorm (nets/norm.py): two DDP processes, each with half the batch, compute the
outputs and gradients of one BatchNorm over the whole batch (1-d for VICReg's expander, 2-d for
the conv nets), and update the running statistics alike."""

import pytest
import torch
from conftest import run_two_processes
from torch import nn

from simvae.nets.norm import GlobalBatchNorm1d, GlobalBatchNorm2d


def _problem():
    g = torch.Generator().manual_seed(0)
    return {
        "2d": (torch.randn(8, 3, 5, 5, generator=g) * 2 + 1, GlobalBatchNorm2d, nn.BatchNorm2d),
        "1d": (torch.randn(8, 4, generator=g) * 3 - 2, GlobalBatchNorm1d, nn.BatchNorm1d),
    }


def _weights(bn):
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, bn.num_features))
        bn.bias.copy_(torch.linspace(-0.2, 0.3, bn.num_features))
    return bn


def _worker(rank, world, init_file, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {}
        for name, (x, cls, _) in _problem().items():
            bn = _weights(cls(x.shape[1]))
            b = x.shape[0] // world
            local = x[rank * b : (rank + 1) * b].clone().requires_grad_(True)
            y = bn(local)
            (y * torch.arange(y.numel()).view_as(y).float().sin()[:]).sum().backward()  # any loss of the local part
            grads = [p.grad.clone() for p in bn.parameters()]
            for gr in grads:
                dist.all_reduce(gr)  # DDP sums (then averages) parameter gradients over processes
            ys, gxs = [torch.empty_like(y) for _ in range(world)], [torch.empty_like(local) for _ in range(world)]
            dist.all_gather(ys, y.detach())
            dist.all_gather(gxs, local.grad)
            result[name] = (torch.cat(ys), torch.cat(gxs), grads, bn.running_mean.clone(), bn.running_var.clone())
        if rank == 0:
            torch.save(result, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_normalise_as_one(tmp_path):
    got = run_two_processes(_worker, tmp_path)
    for name, (x, _, ref_cls) in _problem().items():
        ref = _weights(ref_cls(x.shape[1]))
        xr = x.clone().requires_grad_(True)
        y = ref(xr)
        b = x.shape[0] // 2
        # the same loss, computed per half as each process did (the sin weights restart per half)
        w = torch.cat([torch.arange(y[:b].numel()).view_as(y[:b]).float().sin()] * 2)
        (y * w).sum().backward()
        y2, gx2, grads, rmean, rvar = got[name]
        torch.testing.assert_close(y2, y.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gx2, xr.grad, rtol=1e-4, atol=1e-5)
        for g, p in zip(grads, ref.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(rmean, ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rvar, ref.running_var, rtol=1e-4, atol=1e-5)


def test_one_process_is_plain_batchnorm():
    x = torch.randn(6, 3, 4, 4)
    a, b = _weights(GlobalBatchNorm2d(3)), _weights(nn.BatchNorm2d(3))
    torch.testing.assert_close(a(x), b(x))
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))
