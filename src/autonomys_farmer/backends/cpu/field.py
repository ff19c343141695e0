"""Fr vector operations on the CPU, launching the shared Montgomery kernel bodies."""

from __future__ import annotations

import numpy as np
from numba import prange

from autonomys_farmer.backends.cpu.kernels import CPU, launcher

mont_mul_into = CPU.mont_mul_into
add_into = CPU.add_into
negate_row = CPU.negate_row
ntt_butterfly = CPU.ntt_butterfly
bit_reverse_swap = CPU.bit_reverse_swap

WORK_CHUNKS = 64


@launcher
def mul_launch(a, b, out):
    """out = a·b elementwise; b may have one row (broadcast)."""
    n = a.shape[0]
    nchunks = min(WORK_CHUNKS, max(1, n))
    bcast = b.shape[0] == 1
    for c in prange(nchunks):
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            mont_mul_into(a, i, b, 0 if bcast else i, out, i)


@launcher
def add_launch(out, b):
    """out += b elementwise (out starts as a copy of a)."""
    n = out.shape[0]
    nchunks = min(WORK_CHUNKS, max(1, n))
    for c in prange(nchunks):
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            add_into(out, i, b, i)


@launcher
def negate_launch(x, out):
    for i in prange(x.shape[0]):
        negate_row(x, i, out)


@launcher
def ntt_blocks_launch(blocks, twiddles, max_domain, log_n):
    """Independent NTTs of every block, one block per core at a time (many small transforms)."""
    n = blocks.shape[1]
    for b in prange(blocks.shape[0]):
        x = blocks[b]
        for i in range(n):
            bit_reverse_swap(x, i, log_n)
        length = 2
        while length <= n:
            for k in range(n >> 1):
                ntt_butterfly(k, x, twiddles, length, max_domain)
            length <<= 1


@launcher
def ntt_stages_launch(x, twiddles, max_domain, log_n):
    """One NTT with each stage's butterflies spread over the cores (few large transforms)."""
    n = x.shape[0]
    half_n = n >> 1
    nchunks = min(32, half_n)
    for i in prange(n):
        bit_reverse_swap(x, i, log_n)
    length = 2
    while length <= n:
        for c in prange(nchunks):
            for k in range(c * half_n // nchunks, (c + 1) * half_n // nchunks):
                ntt_butterfly(k, x, twiddles, length, max_domain)
        length <<= 1


@launcher
def prefix_products_launch(x, prefix):
    """prefix[i] = x[0]·…·x[i] (sequential by nature)."""
    prefix[0] = x[0]
    for i in range(1, x.shape[0]):
        mont_mul_into(prefix, i - 1, x, i, prefix, i)


@launcher
def inverse_sweep_launch(x, prefix, total_inverse, out):
    """Inverses of every row from the prefix products and the inverse of their total."""
    acc = total_inverse.copy()
    for i in range(x.shape[0] - 1, 0, -1):
        mont_mul_into(acc, 0, prefix, i - 1, out, i)
        mont_mul_into(acc, 0, x, i, acc, 0)
    out[0] = acc[0]


@launcher
def synthetic_division_launch(coeffs, point, q):
    """q[L-2] = c[L-1], q[j-1] = c[j] + x·q[j] (Montgomery rows)."""
    acc = np.zeros((1, 8), np.uint32)
    for j in range(coeffs.shape[0] - 1, 0, -1):
        mont_mul_into(acc, 0, point, 0, acc, 0)
        add_into(acc, 0, coeffs, j)
        q[j - 1] = acc[0]


@launcher
def mul_monic_pairs_launch(a, b, out):
    """Low 2d coefficients of (X^d + a)(X^d + b) for each pair (schoolbook, small d)."""
    count, d = a.shape[0], a.shape[1]
    for p in prange(count):
        product = np.empty((1, 8), np.uint32)
        for i in range(d):
            for j in range(d):
                mont_mul_into(a[p], i, b[p], j, product, 0)
                add_into(out[p], i + j, product, 0)
        for i in range(d):
            add_into(out[p], d + i, a[p], i)
            add_into(out[p], d + i, b[p], i)
