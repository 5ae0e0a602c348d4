"""``torch_threads(n)``: run a block with ``n`` torch intra-op threads, restoring the previous count after it.

Stages take their thread count from config (``evaluate.threads``, ``curate.threads``, ``privacy.threads``); one
thread is much faster on a CPU shared with other jobs (OpenMP threads spin).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` for the block (``None``/0: leave torch's count as it is)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
