"""Farm identity and reward signing (node-and-cluster.md §2): sr25519 with context `subspace_reward`.

py-sr25519-bindings derives keypairs and computes r·B, but signs only with the context
"substrate"; the schnorrkel transcript is therefore built here with merlin-transcripts, and
verification (the node's side) checks s·B == R + k·A with a small Ristretto255 implementation.
"""

from __future__ import annotations

import hashlib
import secrets

import sr25519
from merlin_transcripts import MerlinTranscript

from autonomys_farmer.protocol.constants import REWARD_SIGNING_CONTEXT

# Ed25519 / Ristretto255 constants (RFC 9496)
SIGNATURE_SIZE = 64  # sr25519: Ristretto point R (32) ‖ scalar s (32), marked in the top bit
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
INVSQRT_A_MINUS_D = 54469307008909316920995813868745141605393597292927456921205312896311721017578


class SigningError(ValueError):
    """Bad key, signature or identity material."""


# --- Identity -------------------------------------------------------------------------------------


def mini_secret_from_entropy(entropy: bytes) -> bytes:
    """Substrate's BIP-39 seed: PBKDF2-HMAC-SHA512(entropy, "mnemonic", 2048)[:32]."""
    if len(entropy) != 32:
        raise SigningError(f"identity entropy must be 32 bytes, got {len(entropy)}")
    return hashlib.pbkdf2_hmac("sha512", entropy, b"mnemonic", 2048)[:32]


def keypair_from_entropy(entropy: bytes) -> tuple[bytes, bytes]:
    """(public key 32, secret key 64 = scalar ‖ nonce), as schnorrkel's Ed25519 expansion mode."""
    public, secret = sr25519.pair_from_seed(mini_secret_from_entropy(entropy))
    return bytes(public), bytes(secret)


def identity_file_bytes(entropy: bytes) -> bytes:
    """identity.bin: SCALE Vec<u8> of the 32 entropy bytes (compact(32) = 0x80)."""
    if len(entropy) != 32:
        raise SigningError(f"identity entropy must be 32 bytes, got {len(entropy)}")
    return b"\x80" + entropy


def entropy_from_identity_file(data: bytes) -> bytes:
    if len(data) != 33 or data[0] != 0x80:
        raise SigningError("identity file has invalid contents (expected 0x80 followed by 32 bytes)")
    return data[1:]


# --- Ristretto255 ---------------------------------------------------------------------------------


def _is_negative(x: int) -> bool:
    return x % P % 2 == 1


def _abs(x: int) -> int:
    x %= P
    return P - x if _is_negative(x) else x


def _sqrt_ratio_m1(u: int, v: int) -> tuple[bool, int]:
    r = (u * pow(v, 3, P)) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    check = v * r * r % P
    correct = check == u % P
    flipped = check == (-u) % P
    flipped_i = check == (-u * SQRT_M1) % P
    if flipped or flipped_i:
        r = r * SQRT_M1 % P
    return correct or flipped, _abs(r)


Point = tuple[int, int, int, int]  # extended Edwards coordinates (X, Y, Z, T)


def ristretto_decode(data: bytes) -> Point:
    if len(data) != 32:
        raise SigningError(f"Ristretto point must be 32 bytes, got {len(data)}")
    s = int.from_bytes(data, "little")
    if s >= P or _is_negative(s):
        raise SigningError("non-canonical Ristretto encoding")
    ss = s * s % P
    u1 = (1 - ss) % P
    u2 = (1 + ss) % P
    u2_sqr = u2 * u2 % P
    v = (-(D * u1 * u1) - u2_sqr) % P
    was_square, invsqrt = _sqrt_ratio_m1(1, v * u2_sqr % P)
    den_x = invsqrt * u2 % P
    den_y = invsqrt * den_x * v % P
    x = _abs(2 * s * den_x)
    y = u1 * den_y % P
    t = x * y % P
    if not was_square or _is_negative(t) or y == 0:
        raise SigningError("invalid Ristretto point")
    return x, y, 1, t


def ristretto_encode(point: Point) -> bytes:
    x0, y0, z0, t0 = point
    u1 = (z0 + y0) * (z0 - y0) % P
    u2 = x0 * y0 % P
    _, invsqrt = _sqrt_ratio_m1(1, u1 * u2 * u2 % P)
    den1 = invsqrt * u1 % P
    den2 = invsqrt * u2 % P
    z_inv = den1 * den2 * t0 % P
    if _is_negative(t0 * z_inv):
        x, y, den_inv = y0 * SQRT_M1 % P, x0 * SQRT_M1 % P, den1 * INVSQRT_A_MINUS_D % P
    else:
        x, y, den_inv = x0, y0, den2
    if _is_negative(x * z_inv):
        y = (-y) % P
    return _abs(den_inv * (z0 - y)).to_bytes(32, "little")


def _add(p1: Point, p2: Point) -> Point:
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _mul(k: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _base_times(scalar: int) -> bytes:
    """scalar·B as Ristretto bytes, via the sr25519 library (a 64-byte secret of scalar ‖ nonce)."""
    return bytes(sr25519.public_from_secret_key(scalar.to_bytes(32, "little") + bytes(32)))


# --- Signing ---------------------------------------------------------------------------------------


def _transcript(context: bytes, message: bytes, public_key: bytes) -> MerlinTranscript:
    t = MerlinTranscript(b"SigningContext")
    t.append_message(b"", context)
    t.append_message(b"sign-bytes", message)
    t.append_message(b"proto-name", b"Schnorr-sig")
    t.append_message(b"sign:pk", public_key)
    return t


def sign(secret_key: bytes, public_key: bytes, message: bytes, context: bytes = REWARD_SIGNING_CONTEXT) -> bytes:
    """schnorrkel signature R ‖ s (with the schnorrkel marker bit) over message in `context`."""
    if len(secret_key) != 64:
        raise SigningError(f"sr25519 secret key must be 64 bytes, got {len(secret_key)}")
    key = int.from_bytes(secret_key[:32], "little")
    t = _transcript(context, message, public_key)
    r = int.from_bytes(secrets.token_bytes(64), "little") % L
    big_r = _base_times(r)
    t.append_message(b"sign:R", big_r)
    k = int.from_bytes(t.challenge_bytes(b"sign:c", 64), "little") % L
    s = bytearray(((k * key + r) % L).to_bytes(32, "little"))
    s[31] |= 0x80
    return big_r + bytes(s)


def verify(public_key: bytes, message: bytes, signature: bytes, context: bytes = REWARD_SIGNING_CONTEXT) -> bool:
    """The node's check of a reward signature: s·B == R + k·A."""
    if len(signature) != SIGNATURE_SIZE or len(public_key) != 32 or not signature[63] & 0x80:
        return False
    s_bytes = bytearray(signature[32:])
    s_bytes[31] &= 0x7F
    s = int.from_bytes(s_bytes, "little")
    if s >= L:
        return False
    try:
        big_r = ristretto_decode(signature[:32])
        a = ristretto_decode(public_key)
    except SigningError:
        return False
    t = _transcript(context, message, public_key)
    t.append_message(b"sign:R", signature[:32])
    k = int.from_bytes(t.challenge_bytes(b"sign:c", 64), "little") % L
    return ristretto_encode(_add(big_r, _mul(k, a))) == _base_times(s)


# --- SS58 reward addresses -------------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
AUTONOMYS_SS58_PREFIX = 6094


def _b58decode(text: str) -> bytes:
    value = 0
    for ch in text:
        index = _B58.find(ch)
        if index < 0:
            raise SigningError(f"invalid base58 character {ch!r} in address {text!r}")
        value = value * 58 + index
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes(len(text) - len(text.lstrip("1"))) + raw


def _b58encode(data: bytes) -> str:
    value = int.from_bytes(data, "big")
    out = ""
    while value:
        value, rem = divmod(value, 58)
        out = _B58[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _ss58_checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]


def ss58_decode(address: str) -> bytes:
    """The 32-byte account key of any valid SS58 address (the network prefix is not checked)."""
    data = _b58decode(address)
    if not data:
        raise SigningError(f"empty SS58 address {address!r}")
    if data[0] < 64:
        prefix_len = 1
    elif data[0] < 128:
        prefix_len = 2
    else:
        raise SigningError(f"SS58 address {address!r} has an invalid prefix byte")
    if len(data) != prefix_len + 32 + 2:
        raise SigningError(f"SS58 address {address!r} does not hold a 32-byte key")
    if _ss58_checksum(data[: prefix_len + 32]) != data[-2:]:
        raise SigningError(f"SS58 address {address!r} has a bad checksum")
    return data[prefix_len : prefix_len + 32]


def ss58_encode(public_key: bytes, prefix: int = AUTONOMYS_SS58_PREFIX) -> str:
    if prefix < 64:
        head = bytes([prefix])
    else:
        head = bytes([((prefix & 0xFC) >> 2) | 0x40, (prefix >> 8) | ((prefix & 0x03) << 6)])
    payload = head + public_key
    return _b58encode(payload + _ss58_checksum(payload))
