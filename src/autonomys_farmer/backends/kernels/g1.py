"""BLS12-381 G1 kernel bodies: point addition and doubling in XYZZ coordinates (y² = x³ + 4, a = 0).

A point is a tuple (X, Y, ZZ, ZZZ) of Fp tuples with x = X/ZZ, y = Y/ZZZ; ZZ = 0 is the identity. XYZZ
adds with no inversion and, unlike Jacobian, adds an affine point in 8M + 2S, which is what bucket
accumulation does most. Formulas are the EFD's add-2008-s, madd-2008-s and dbl-2008-s-1; their
exceptional cases (equal points, opposite points, the identity) are handled explicitly, so the sum is
right for any inputs, repeated points included, and p + p is a doubling.
"""

from __future__ import annotations

from autonomys_farmer.backends.kernels.fp import (
    FP_ONE,
    FP_ZERO,
    fp_add,
    fp_is_zero,
    fp_load,
    fp_mul,
    fp_store,
    fp_sub,
)
from autonomys_farmer.backends.kernels.source import kernel

XYZZ_IDENTITY = (FP_ONE, FP_ONE, FP_ZERO, FP_ZERO)


@kernel
def xyzz_finish(pe, r, u1, s1, zz_a, zzz_a, doubling):
    """The tail add-2008-s and dbl-2008-s-1 share. Adding: pe = U2 - U1, r = S2 - S1, (u1, s1) = (U1, S1),
    (zz_a, zzz_a) = (ZZ1·ZZ2, ZZZ1·ZZZ2). Doubling p: pe = 2·Y1, r = 3·X1², (u1, s1) = (X1, Y1),
    (zz_a, zzz_a) = (ZZ1, ZZZ1), and no -PPP in X3. One tail for both keeps one copy of it in the
    inlined GPU code of each caller."""
    pp = fp_mul(pe, pe)
    ppp = fp_mul(pe, pp)
    q = fp_mul(u1, pp)
    minus = ppp
    if doubling:
        minus = FP_ZERO
    x3 = fp_sub(fp_sub(fp_sub(fp_mul(r, r), minus), q), q)
    y3 = fp_sub(fp_mul(r, fp_sub(q, x3)), fp_mul(s1, ppp))
    return (x3, y3, fp_mul(zz_a, pp), fp_mul(zzz_a, ppp))


@kernel
def doubling_terms(x1, y1):
    """(2·y1, 3·x1²): what the shared tail takes in place of (P, R) when the sum is a doubling."""
    xx = fp_mul(x1, x1)
    return fp_add(y1, y1), fp_add(fp_add(xx, xx), xx)


@kernel
def xyzz_add_affine(p, x2, y2):
    """p + (x2, y2) for an affine point that is not the identity (madd-2008-s; 2p when they are equal)."""
    if fp_is_zero(p[2]):
        return (x2, y2, FP_ONE, FP_ONE)
    x1, y1, zz1, zzz1 = p
    pe = fp_sub(fp_mul(x2, zz1), x1)
    r = fp_sub(fp_mul(y2, zzz1), y1)
    doubling = fp_is_zero(pe)
    if doubling:
        if not fp_is_zero(r):
            return XYZZ_IDENTITY
        pe, r = doubling_terms(x1, y1)
    return xyzz_finish(pe, r, x1, y1, zz1, zzz1, doubling)


@kernel
def xyzz_add(p, q):
    """p + q (add-2008-s; 2p by dbl-2008-s-1 when they are equal, so p + p doubles)."""
    if fp_is_zero(p[2]):
        return q
    if fp_is_zero(q[2]):
        return p
    x1, y1, zz1, zzz1 = p
    x2, y2, zz2, zzz2 = q
    u1 = fp_mul(x1, zz2)
    s1 = fp_mul(y1, zzz2)
    pe = fp_sub(fp_mul(x2, zz1), u1)
    r = fp_sub(fp_mul(y2, zzz1), s1)
    doubling = fp_is_zero(pe)
    if doubling:
        if not fp_is_zero(r):
            return XYZZ_IDENTITY
        pe, r = doubling_terms(x1, y1)
        return xyzz_finish(pe, r, x1, y1, zz1, zzz1, doubling)
    return xyzz_finish(pe, r, u1, s1, fp_mul(zz1, zz2), fp_mul(zzz1, zzz2), doubling)


@kernel
def xyzz_load(array, i):
    """Point i of a (n, 4, 12) uint32 array."""
    return (fp_load(array, i, 0), fp_load(array, i, 1), fp_load(array, i, 2), fp_load(array, i, 3))


@kernel
def xyzz_store(array, i, p):
    fp_store(array, i, 0, p[0])
    fp_store(array, i, 1, p[1])
    fp_store(array, i, 2, p[2])
    fp_store(array, i, 3, p[3])
