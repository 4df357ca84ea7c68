"""Helper for tests/test_ddp.py: one training step of the real ``Trainer`` per method.

Run under ``torchrun --nproc-per-node N`` (DDP on gloo, CPU) or as a plain process
(one process). For each method named on the command line it builds a ``Trainer`` on the
same tiny in-memory data set, takes ONE ``train_step`` on a fixed global batch, and saves
(rank 0 only) the parameters after the step, the gradients of the step and the loss terms
of every rank to ``OUT_DIR/<method>.pt``. Precision is pinned to fp32: ``auto`` picks bf16
on hosts with native bf16 (AVX-512 BF16, AMX), whose round-off (8 mantissa bits) is far
above the fp32 tolerances the equality of the steps is checked to.

    python tests/ddp_worker.py OUT_DIR simvae simclr vicreg
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

N_IMAGES, BATCH, SIDE = 32, 8, 8
METHOD_OPTIONS = {
    "simvae": {"n_views": 3},  # groups of J views, never split across processes
    "vae": {},
    "beta-vae": {},
    "cr-vae": {},  # noise consumed in the order drawn
    "simclr": {"n_views": 3},  # J > 2: every other view of the same image is a positive
    "moco": {"queue_size": 16},  # keys gathered from every process into the queue
    "mocov2": {"queue_size": 16},
    "vicreg": {"n_views": 2},  # BatchNorm in the expander, batch statistics in the loss
    "random": {},
}


def tiny_data():
    from simvae.data import ImageData

    g = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (N_IMAGES, 1, SIDE, SIDE), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (N_IMAGES,), generator=g)
    return ImageData("fashion-mnist", images, labels, images[:8], labels[:8], [str(i) for i in range(10)], "ddp-test")


def global_batch() -> torch.Tensor:
    """The indices of the one global batch every configuration trains on."""
    return torch.randperm(N_IMAGES, generator=torch.Generator().manual_seed(7))[:BATCH]


def one_step(method: str, out_dir: Path) -> dict:
    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    run = build_run_config(
        {
            "train": {
                "method": method,
                "batch_size": BATCH,
                "epochs": 1,
                "device": "cpu",
                "seed": 0,
                "train_subset": N_IMAGES,
                "lr": 1e-3,
                "precision": "fp32",
            },
            "method": METHOD_OPTIONS[method],
        }
    )
    trainer = Trainer(run, out_dir / method, data=tiny_data(), progress=False)
    terms = trainer.train_step(global_batch())
    return {
        "world": trainer.dist.world,
        "rank": trainer.dist.rank,
        "params": {k: v.detach().clone() for k, v in trainer.method.named_parameters()},
        "grads": {k: v.grad.detach().clone() for k, v in trainer.method.named_parameters() if v.grad is not None},
        "buffers": {k: v.detach().clone() for k, v in trainer.method.named_buffers()},
        "terms": {k: float(v) for k, v in terms.items()},
    }


def one_epoch(method: str, out_dir: Path) -> list[dict]:
    """A whole epoch (4 steps) through ``Trainer.fit``: the records it logged to metrics.jsonl
    and steps.jsonl (main process only; [] elsewhere)."""
    import json

    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    run = build_run_config(
        {
            "train": {
                "method": method,
                "batch_size": BATCH,
                "epochs": 1,
                "device": "cpu",
                "seed": 0,
                "train_subset": N_IMAGES,
                "lr": 1e-3,
                "precision": "fp32",
            },
            "method": METHOD_OPTIONS[method],
        }
    )
    folder = out_dir / f"{method}-fit"
    folder.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(run, folder, data=tiny_data(), progress=False)
    trainer.fit()
    if not trainer.dist.main:
        return []
    read = lambda name: [json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()]
    return read("metrics.jsonl") + read("steps.jsonl")


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0])
    methods = argv[1:]
    torch.set_num_threads(1)
    import torch.distributed as dist

    for method in methods:
        result = one_step(method, out_dir)
        if dist.is_available() and dist.is_initialized():
            # every rank's loss terms (SimVAE: each rank's loss is the mean over its own groups)
            all_terms = [None] * dist.get_world_size()
            dist.all_gather_object(all_terms, result["terms"])
            result["rank_terms"] = all_terms
        else:
            result["rank_terms"] = [result["terms"]]
        result["logged"] = one_epoch(method, out_dir)
        if result["rank"] == 0:
            torch.save(result, out_dir / f"{method}.pt")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
