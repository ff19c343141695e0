"""Montgomery arithmetic on tuples of 64-bit words, written out as straight-line kernel source.

Both fields use it: the scalar field Fr (4 words, protocol.field) and the curve's base field Fp (6 words,
protocol.g1). An element is a tuple of uint64 words, little-endian, in Montgomery form (a·2^(64w) mod m).
Tuples, not arrays: a tuple is registers on the GPU and SSA values on the CPU, where an array would be
local memory and loads/stores. Loops over tuple elements cannot be compiled, so `field_source` writes
the bodies out (read it for the algorithm); the text is ordinary kernel source, compiled for every
target like the rest.

64-bit words need the 128-bit product (`mul_wide`) and carry chains (`add_carry`, `sub_borrow`), which
each target provides natively (an LLVM i128 multiply on the CPU, libdevice's umul64hi on the GPU), so a
product takes w² wide multiplications instead of 4w² narrow ones. Multiplication is CIOS without the
final-carry word (valid when the modulus' top word is below 2^63 - 1, so the running value stays below
2m), then one conditional subtraction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autonomys_farmer.backends.kernels.intrinsics import add_carry, mul_wide, sub_borrow
from autonomys_farmer.backends.kernels.ints import U64

ZERO = np.uint64(0)
WORD_MASK = (1 << 64) - 1


def words_of(value: int, count: int) -> tuple[np.uint64, ...]:
    return tuple(np.uint64((value >> (64 * j)) & WORD_MASK) for j in range(count))


def field_source(prefix: str, modulus: int) -> str:
    """Source of {prefix}_mul, _add, _sub and _is_zero for the field of this modulus."""
    n = -(-modulus.bit_length() // 64)
    m_words = [int(w) for w in words_of(modulus, n)]
    n0_inv = (-pow(modulus, -1, 1 << 64)) % (1 << 64)
    if m_words[-1] >= (1 << 63) - 1:
        raise ValueError("the no-carry CIOS needs a spare bit in the modulus' top word")

    def names(p: str) -> str:
        return ", ".join(f"{p}{j}" for j in range(n))

    def tup(p: str) -> str:
        return "(" + ", ".join(f"{p}{j}" for j in range(n)) + ")"

    def reduce_once(src: str) -> list[str]:
        lines = ["    borrow = ZERO"]
        lines += [f"    d{j}, borrow = sub_borrow({src}{j}, U64({m_words[j]}), borrow)" for j in range(n)]
        return [*lines, "    if borrow:", f"        return {tup(src)}", f"    return {tup('d')}"]

    mul = [f"def {prefix}_mul(a, b):", '    """a·b/2^(64w) mod m (Montgomery product)."""']
    mul += [f"    {names('a')} = a", f"    {names('b')} = b", *(f"    t{j} = ZERO" for j in range(n))]
    for i in range(n):
        mul += [
            f"    lo, hi = mul_wide(a0, b{i})",
            "    t0, c = add_carry(t0, lo, ZERO)",
            "    ha = U64(hi + c)",
            f"    m, _ = mul_wide(t0, U64({n0_inv}))",
            f"    lo, hi = mul_wide(m, U64({m_words[0]}))",
            "    _, c = add_carry(t0, lo, ZERO)",
            "    hc = U64(hi + c)",
        ]
        for j in range(1, n):
            mul += [
                f"    lo, hi = mul_wide(a{j}, b{i})",
                f"    s, c1 = add_carry(t{j}, lo, ZERO)",
                "    s, c2 = add_carry(s, ha, ZERO)",
                "    ha = U64(hi + c1 + c2)",
                f"    lo, hi = mul_wide(m, U64({m_words[j]}))",
                "    s, c1 = add_carry(s, lo, ZERO)",
                f"    t{j - 1}, c2 = add_carry(s, hc, ZERO)",
                "    hc = U64(hi + c1 + c2)",
            ]
        mul.append(f"    t{n - 1} = U64(hc + ha)")
    mul += reduce_once("t")

    add = [f"def {prefix}_add(a, b):", '    """a + b mod m."""', f"    {names('a')} = a", f"    {names('b')} = b"]
    add += ["    c = ZERO", *(f"    t{j}, c = add_carry(a{j}, b{j}, c)" for j in range(n)), *reduce_once("t")]

    sub = [f"def {prefix}_sub(a, b):", '    """a - b mod m."""', f"    {names('a')} = a", f"    {names('b')} = b"]
    sub += ["    borrow = ZERO", *(f"    t{j}, borrow = sub_borrow(a{j}, b{j}, borrow)" for j in range(n))]
    sub += ["    if borrow:", "        c = ZERO"]
    sub += [f"        t{j}, c = add_carry(t{j}, U64({m_words[j]}), c)" for j in range(n)]
    sub.append(f"    return {tup('t')}")

    terms = " | ".join(f"a[{j}]" for j in range(n))
    is_zero = [f"def {prefix}_is_zero(a):", '    """a == 0."""', f"    return U64({terms}) == ZERO"]
    return "\n\n".join("\n".join(lines) for lines in (mul, add, sub, is_zero)) + "\n"


def define(prefix: str, modulus: int, module_globals: dict[str, Any]) -> dict[str, Any]:
    """Compile field_source() into the calling module (pass its `globals()`), marked as kernels.

    The functions become that module's own, so `compile_kernels` finds and rebinds them like any other
    body; the code is compiled under the module's file name because numba's on-disk cache keys its index
    on a real source file."""
    module_globals.update(U64=U64, ZERO=ZERO, mul_wide=mul_wide, add_carry=add_carry, sub_borrow=sub_borrow)
    exec(compile(field_source(prefix, modulus), module_globals["__file__"], "exec"), module_globals)
    functions = {op: module_globals[f"{prefix}_{op}"] for op in ("mul", "add", "sub", "is_zero")}
    for fn in functions.values():
        fn.__kernel__ = True
    return functions
