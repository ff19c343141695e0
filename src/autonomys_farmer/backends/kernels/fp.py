"""BLS12-381 base field (Fp) kernel bodies: Montgomery arithmetic on 6x64-bit words held in tuples.

An element is a tuple of 6 uint64 words, little-endian, in Montgomery form (a·2^384 mod p); in memory
it is the contract's 12 uint32 limbs viewed as 6 uint64 (the same bytes). Tuples, not arrays, because
the curve code keeps a dozen elements live at once: a tuple is registers on the GPU and SSA values on
the CPU, where an array would be local memory and loads/stores. Loops over tuple elements cannot be
compiled, so the bodies are straight-line code written out by the generator below (read it for the
algorithm); the generated text is ordinary kernel source compiled for every target.

64-bit words need the 128-bit product (`mul_wide`) and carry chains (`add_carry`, `sub_borrow`): each
target provides them natively (an LLVM i128 multiply on the CPU, libdevice's umul64hi on the GPU), so
the CPU multiplies in 36 wide products instead of 144 narrow ones. Multiplication is CIOS without the
final-carry word (valid because p's top word is below 2^63 - 1, so the running value stays below 2p),
then one conditional subtraction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autonomys_farmer.backends.kernels.intrinsics import add_carry, mul_wide, sub_borrow
from autonomys_farmer.backends.kernels.ints import U64
from autonomys_farmer.backends.kernels.source import kernel
from autonomys_farmer.protocol.g1 import FP_LIMBS, FP_MODULUS, FP_R

N = FP_LIMBS // 2  # 64-bit words
P_WORDS = [(FP_MODULUS >> (64 * i)) & 0xFFFFFFFFFFFFFFFF for i in range(N)]
N0_INV = (-pow(FP_MODULUS, -1, 1 << 64)) % (1 << 64)
assert P_WORDS[-1] < (1 << 63) - 1, "the no-carry CIOS needs a spare bit in the top word"

ZERO = np.uint64(0)
FP_ZERO = tuple(ZERO for _ in range(N))
FP_ONE = tuple(np.uint64((FP_R >> (64 * i)) & 0xFFFFFFFFFFFFFFFF) for i in range(N))  # 1, Montgomery form


def _names(prefix: str) -> str:
    return ", ".join(f"{prefix}{j}" for j in range(N))


def _tuple(prefix: str) -> str:
    return "(" + ", ".join(f"{prefix}{j}" for j in range(N)) + ")"


def _const(value: int) -> str:
    return f"U64({value})"


def _reduce_once(src: str) -> list[str]:
    """Lines returning src - p if src >= p else src, for src < 2p in words `src0..`."""
    lines = ["    borrow = ZERO"]
    lines += [f"    d{j}, borrow = sub_borrow({src}{j}, {_const(P_WORDS[j])}, borrow)" for j in range(N)]
    return [*lines, "    if borrow:", f"        return {_tuple(src)}", f"    return {_tuple('d')}"]


def _mul_source() -> str:
    lines = ["def fp_mul(a, b):", '    """a·b/2^384 mod p (Montgomery product)."""']
    lines += [f"    {_names('a')} = a", f"    {_names('b')} = b"]
    lines += [f"    t{j} = ZERO" for j in range(N)]
    for i in range(N):
        lines += [
            f"    lo, hi = mul_wide(a0, b{i})",
            "    t0, c = add_carry(t0, lo, ZERO)",
            "    ha = U64(hi + c)",
            f"    m, _ = mul_wide(t0, {_const(N0_INV)})",
            f"    lo, hi = mul_wide(m, {_const(P_WORDS[0])})",
            "    _, c = add_carry(t0, lo, ZERO)",
            "    hc = U64(hi + c)",
        ]
        for j in range(1, N):
            lines += [
                f"    lo, hi = mul_wide(a{j}, b{i})",
                f"    s, c1 = add_carry(t{j}, lo, ZERO)",
                "    s, c2 = add_carry(s, ha, ZERO)",
                "    ha = U64(hi + c1 + c2)",
                f"    lo, hi = mul_wide(m, {_const(P_WORDS[j])})",
                "    s, c1 = add_carry(s, lo, ZERO)",
                f"    t{j - 1}, c2 = add_carry(s, hc, ZERO)",
                "    hc = U64(hi + c1 + c2)",
            ]
        lines.append(f"    t{N - 1} = U64(hc + ha)")
    return "\n".join(lines + _reduce_once("t")) + "\n"


def _add_source() -> str:
    lines = ["def fp_add(a, b):", '    """a + b mod p."""', f"    {_names('a')} = a", f"    {_names('b')} = b"]
    lines.append("    c = ZERO")
    lines += [f"    t{j}, c = add_carry(a{j}, b{j}, c)" for j in range(N)]
    return "\n".join(lines + _reduce_once("t")) + "\n"


def _sub_source() -> str:
    lines = ["def fp_sub(a, b):", '    """a - b mod p."""', f"    {_names('a')} = a", f"    {_names('b')} = b"]
    lines.append("    borrow = ZERO")
    lines += [f"    t{j}, borrow = sub_borrow(a{j}, b{j}, borrow)" for j in range(N)]
    lines += ["    if borrow:", "        c = ZERO"]
    lines += [f"        t{j}, c = add_carry(t{j}, {_const(P_WORDS[j])}, c)" for j in range(N)]
    return "\n".join([*lines, f"    return {_tuple('t')}"]) + "\n"


def _is_zero_source() -> str:
    terms = " | ".join(f"a[{j}]" for j in range(N))
    return f'def fp_is_zero(a):\n    """a == 0."""\n    return U64({terms}) == ZERO\n'


def _load_source() -> str:
    items = ", ".join(f"U64(array[i, k, {j}])" for j in range(N))
    doc = '"""Element k of point i of a (n, K, 6) uint64 array."""'
    return f"def fp_load(array, i, k):\n    {doc}\n    return ({items})\n"


def _store_source() -> str:
    lines = ["def fp_store(array, i, k, v):", '    """array[i, k] = v."""']
    return "\n".join(lines + [f"    array[i, k, {j}] = v[{j}]" for j in range(N)]) + "\n"


SOURCE = "\n".join([_mul_source(), _add_source(), _sub_source(), _is_zero_source(), _load_source(), _store_source()])
_namespace: dict[str, Any] = {
    "U64": U64,
    "ZERO": ZERO,
    "mul_wide": mul_wide,
    "add_carry": add_carry,
    "sub_borrow": sub_borrow,
}
# Compiled under this file's name: numba's on-disk cache needs a real source file to key its index on.
exec(compile(SOURCE, __file__, "exec"), _namespace)

fp_mul = kernel(_namespace["fp_mul"])
fp_add = kernel(_namespace["fp_add"])
fp_sub = kernel(_namespace["fp_sub"])
fp_is_zero = kernel(_namespace["fp_is_zero"])
fp_load = kernel(_namespace["fp_load"])
fp_store = kernel(_namespace["fp_store"])
for _fn in (fp_mul, fp_add, fp_sub, fp_is_zero, fp_load, fp_store):
    _fn.__module__ = __name__


@kernel
def fp_neg(a):
    """-a mod p."""
    return fp_sub(FP_ZERO, a)
