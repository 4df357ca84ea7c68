"""MoCo: FIFO queue order, the momentum update formula, and the method's step-by-step state."""

import pytest
import torch
from torch import nn

from simvae.methods import Batch, ModelSpec, build_method
from simvae.methods.moco import fifo_enqueue, momentum_update

SHAPE = ModelSpec((1, 6, 6), 4)


def keys(*values):
    return torch.tensor([[float(v), -float(v)] for v in values])


def test_fifo_enqueue_wraps_around_in_order():
    queue = torch.zeros(5, 2)
    ptr = fifo_enqueue(queue, 0, keys(1, 2, 3))
    assert ptr == 3
    assert torch.equal(queue, keys(1, 2, 3, 0, 0))
    ptr = fifo_enqueue(queue, ptr, keys(4, 5, 6, 7))  # 3 + 4 > 5: 6 and 7 overwrite the oldest, 1 and 2
    assert ptr == 2
    assert torch.equal(queue, keys(6, 7, 3, 4, 5))


def test_fifo_enqueue_more_keys_than_slots_keeps_the_last():
    queue = torch.zeros(3, 2)
    ptr = fifo_enqueue(queue, 1, keys(1, 2, 3, 4, 5))  # one by one: slots 1,2,0,1,2 <- 1,2,3,4,5
    assert ptr == 0
    assert torch.equal(queue, keys(3, 4, 5))


def test_momentum_update_formula_exactly():
    torch.manual_seed(0)
    key, query = nn.Linear(3, 2), nn.Linear(3, 2)
    with torch.no_grad():  # integers and m = 3/4: every value below is exact in float32
        for p in list(key.parameters()) + list(query.parameters()):
            p.copy_(torch.randint(-8, 8, p.shape).float())
    before = [p.clone() for p in key.parameters()]
    momentum_update(key, query, 0.75)
    for pk, k0, pq in zip(key.parameters(), before, query.parameters()):
        assert torch.equal(pk, 0.75 * k0 + 0.25 * pq)
    assert not torch.equal(before[0], key.weight)


def batch_of(b, j=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = torch.rand(b, j, *SHAPE.image_shape, generator=g)
    return Batch(views[:, 0], views, lambda per_image, dim: torch.randn(b * per_image, dim))


@pytest.mark.parametrize("name, temperature, head", [("moco", 0.7, False), ("mocov2", 0.2, True)])
def test_defaults_and_heads(name, temperature, head):
    m = build_method(name, SHAPE, {})
    assert m.cfg.temperature == temperature and m.n_views == 2
    assert isinstance(m.head, nn.Identity) != head
    assert m.queue.shape == (4096, 128 if head else SHAPE.latent_dim)
    assert torch.allclose(m.queue.norm(dim=1), torch.ones(4096))
    for pk, pq in zip(m.key_encoder.parameters(), m.encoder.parameters()):
        assert torch.equal(pk, pq) and not pk.requires_grad
    assert {"queue", "queue_ptr"} <= set(m.state_dict())  # saved with checkpoints, so resume continues


@pytest.mark.parametrize("name", ["moco", "mocov2"])
def test_step_enqueues_keys_and_moves_the_key_encoder(name):
    torch.manual_seed(0)
    m = build_method(name, SHAPE, {"queue_size": 6, "momentum": 0.5})
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.5)
    batch = batch_of(4)
    queue0 = m.queue.clone()
    expected_keys = m.keys(batch.views[:, 1])
    out = m(batch)
    assert torch.equal(m.queue, queue0)  # the loss uses the queue as it was before this step
    out["loss"].backward()
    assert all(p.grad is None for p in m.key_encoder.parameters())
    opt.step()
    q_after = [p.clone() for p in [*m.encoder.parameters(), *m.head.parameters()]]
    k_before = [p.clone() for p in [*m.key_encoder.parameters(), *m.key_head.parameters()]]
    m.after_step()
    key_params = [*m.key_encoder.parameters(), *m.key_head.parameters()]  # the v2 head moves too
    assert len(key_params) == len(k_before) == len(q_after)
    for pk, k0, pq in zip(key_params, k_before, q_after, strict=True):
        torch.testing.assert_close(pk, 0.5 * k0 + 0.5 * pq)
    assert int(m.queue_ptr) == 4
    torch.testing.assert_close(m.queue[:4], expected_keys)
    assert torch.equal(m.queue[4:], queue0[4:])
    second = batch_of(4, seed=1)
    second_keys = m.keys(second.views[:, 1])
    m(second)
    m.after_step()
    assert int(m.queue_ptr) == 2  # 8 keys through 6 slots: slots 4, 5, 0, 1 take the second batch
    torch.testing.assert_close(m.queue, torch.cat([second_keys[2:], expected_keys[2:4], second_keys[:2]]))


def test_eval_forward_does_not_enqueue():
    m = build_method("moco", SHAPE, {"queue_size": 8}).eval()
    queue0 = m.queue.clone()
    with torch.no_grad():
        m(batch_of(4))
    m.after_step()
    assert torch.equal(m.queue, queue0) and int(m.queue_ptr) == 0


def test_loss_uses_the_queue_as_negatives():
    torch.manual_seed(0)
    m = build_method("moco", SHAPE, {"queue_size": 8})
    batch = batch_of(4)
    with torch.no_grad():
        base = m(batch)["loss"].item()
        m.queue.copy_(torch.nn.functional.normalize(m.queries(batch.views[:, 0]).repeat(2, 1), dim=1))
        harder = m(batch)["loss"].item()  # each query now meets itself among the negatives
    assert harder > base


def test_config_validation():
    from simvae.errors import ConfigError

    for bad in ({"temperature": 0}, {"momentum": 1.5}, {"queue_size": 0}, {"head_hidden": 8}):
        with pytest.raises(ConfigError):
            build_method("moco", SHAPE, bad)
    with pytest.raises(ConfigError):
        build_method("mocov2", SHAPE, {"head_out": 0})
