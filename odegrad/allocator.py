"""A solve's temporaries kept in the heap between evaluations: glibc's dynamic thresholds.

glibc serves an allocation above its mmap threshold (128 KiB in a fresh process) with pages mapped
for it alone. Freeing such a block raises the threshold to its size (up to 32 MiB) and the heap's
trim threshold to twice that; when more than the trim threshold lies free at the top of the heap,
``free`` returns it to the system. The derived evaluations of a wide state allocate temporaries
just above 128 KiB, several per evaluation (mlp-64's adjoint: 64 x 256 weight gradients of 128 KiB,
the 33,217-entry state of 260 KiB): after the first of them the thresholds sit near 260 / 520 KiB,
so the heap grows by an evaluation's temporaries and is trimmed back after it, and every evaluation
faults its pages in again. mlp-64's gradient took 0.13-0.17 s so in a fresh process against
0.064-0.074 s once the thresholds were higher (``python -m benchmarks.peers --problems mlp-64``: half
of the cell's time).

:func:`raise_mmap_threshold`, called at every solve and doing its work once per process, frees one
block of :data:`BLOCK_BYTES`, as a program that had used an array of that size would have. Nothing
is set (``mallopt`` would switch glibc's adjustment off for the process): the allocator's own rule
moves the thresholds, to 4 MiB and 8 MiB, so the heap keeps up to 8 MiB between evaluations. Under
another allocator it allocates and frees 4 MiB once.
"""

from __future__ import annotations

import functools

import numpy as np

BLOCK_BYTES = 4 * 2 ** 20
"""The block freed once: temporaries up to this size then come from the heap."""


@functools.lru_cache(maxsize=None)
def raise_mmap_threshold() -> None:
    """Allocate and free one untouched block of :data:`BLOCK_BYTES` (once per process)."""
    block = np.empty(BLOCK_BYTES // 8)
    del block
