"""Recycled CPU output arrays for batched device-side steps run on the CPU.

A reBEN batch of 64 patches at 120 px is a 37-44 MiB float32 tensor. Allocated
fresh for every batch, it costs more than the computation that fills it: glibc
serves allocations above its mmap threshold (32 MiB at most) with a new
mapping, and the kernel then maps and zeroes every page on first touch. On the
2-core development VM the page faults alone took 50-60 ms per batch, the
arithmetic 7 ms. :class:`RecycledArrays` hands out the same memory again once
nothing refers to it any more.

How it knows: each array handed out is a fresh numpy *view* of a pooled base
array, and ``torch.from_numpy`` keeps that view alive for as long as any
tensor (or view, or autograd saved tensor) uses the storage. The pool holds
only a weak reference to the view: when it is dead, no tensor can see the base
and the base is free. New bases come from numpy, which asks the kernel for
transparent huge pages for large arrays (far fewer faults than PyTorch's own
CPU allocator).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch


class RecycledArrays:
    """float32 CPU tensors of a few shapes, reusing memory no tensor refers to any more.

    Args:
        shapes: how many distinct shapes keep a free base (the least recently used
            is dropped first): training, evaluation and last-partial batch sizes.
        per_shape: bases kept per shape (a second one covers a batch still
            referenced while the next one is prepared).
    """

    def __init__(self, shapes: int = 3, per_shape: int = 2) -> None:
        self.shapes = shapes
        self.per_shape = per_shape
        self._pool: OrderedDict[
            tuple[int, ...], list[tuple[np.ndarray, weakref.ref[np.ndarray]]]
        ] = OrderedDict()
        self._lock = threading.Lock()  # two threads must never get the same base
        self.reused = 0  # statistics, for tests and benchmarks
        self.allocated = 0

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised float32 tensor of ``shape``, in recycled memory when possible."""
        with self._lock:
            entries = self._pool.pop(shape, [])
            base = next((b for b, view in entries if view() is None), None)
            if base is None:
                base = np.empty(shape, dtype=np.float32)
                self.allocated += 1
                # every kept base is in use: keep the most recent ones, they may come free
                entries = entries[max(0, len(entries) - self.per_shape + 1) :]
            else:
                self.reused += 1
                entries = [(b, v) for b, v in entries if b is not base]
            handed = base.view()
            entries.append((base, weakref.ref(handed)))
            self._pool[shape] = entries
            while len(self._pool) > self.shapes:
                self._pool.popitem(last=False)
        return torch.from_numpy(handed)
