"""Progress lines for long evaluation work in logs (a line at most every few seconds, not per epoch)."""

from __future__ import annotations

import time
from typing import Callable


def every(seconds: float, fn: Callable[..., None]) -> Callable[..., None]:
    """A progress callback ``(epoch, max_epochs, *extra)`` that calls ``fn(epoch, max_epochs,
    elapsed, *extra)`` at most every ``seconds`` (elapsed: seconds since the callback was made)."""
    start = last = time.monotonic()

    def progress(epoch: int, max_epochs: int, *extra) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= seconds:
            last = now
            fn(epoch, max_epochs, now - start, *extra)

    return progress
