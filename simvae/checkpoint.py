"""Checkpoints: written atomically, loaded safely (``weights_only=True``).

A checkpoint holds everything needed to continue a run bit-for-bit on the same
hardware: model and optimiser state, every RNG state (torch, CUDA, numpy, python,
the run's own generator), the epoch, the step and the position inside an epoch,
and the resolved config.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError
from .rundir import CHECKPOINT, atomic_torch_save  # noqa: F401 (the one atomic writer)

CHECKPOINT_NAME = CHECKPOINT
FORMAT_VERSION = 1


def rng_state(generator: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": _python_state_to_tensor(random.getstate()),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_python_state_from_tensor(state["python"]))
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_tensor(st) -> dict:
    version, internal, gauss = st
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_tensor(d) -> tuple:
    return (d["version"], tuple(int(v) for v in d["internal"].tolist()), d["gauss"])


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # damaged file or foreign pickle: refuse, never execute it
        raise CheckpointError(f"cannot load checkpoint {path}: {_load_error_reason(e)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a simvae checkpoint (format {FORMAT_VERSION})")
    return ckpt


def _load_error_reason(e: Exception) -> str:
    """One short clause for why torch.load failed (torch's own text is long, and for a refused
    pickle it advises weights_only=False, i.e. running the file's code: never say that)."""
    text = str(e).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(e, pickle.UnpicklingError) and "Weights only" in text:
        detail = next((line for line in lines[1:] if not line.startswith(("Please file", "Check the documentation"))), "")
        return "not a checkpoint written by simvae, or damaged (a safe load refuses its content" + (f": {detail})" if detail else ")")
    if isinstance(e, EOFError) or not lines:
        return f"the file is empty or truncated ({type(e).__name__})"
    return f"the file is damaged or truncated ({lines[0].split('. ')[0]})"


def load_model_state(model: torch.nn.Module, state: dict, method: str, ckpt_method: str, path) -> None:
    """Load weights with a clear error when the method or the architecture differ."""
    if method != ckpt_method:
        raise CheckpointError(f"{path} holds a '{ckpt_method}' model, not '{method}'")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or extra or wrong:
        detail = "; ".join(
            filter(
                None,
                [
                    f"missing {', '.join(missing[:3])}" if missing else "",
                    f"unexpected {', '.join(extra[:3])}" if extra else "",
                    f"shape {', '.join(wrong[:3])}" if wrong else "",
                ],
            )
        )
        raise CheckpointError(f"{path} does not fit this '{method}' architecture ({detail})")
    model.load_state_dict(state)


def is_finished(epoch: int, epoch_step: int, epochs_planned: int) -> bool:
    """Whether a model at ``epoch`` completed epochs and ``epoch_step`` steps into the next is the
    end of a run planned for ``epochs_planned`` epochs."""
    return epoch >= epochs_planned and epoch_step == 0
