"""Identifiers and secrets shaped like AWS's, drawn from a seeded RNG so output is reproducible.

Every generator takes the caller's ``random.Random``: a stream per (seed, day, purpose) keeps a
day's output independent of how much randomness another day consumed.
"""

from __future__ import annotations

import hashlib
import random


def stream(seed: int, *parts: object) -> random.Random:
    """A named RNG stream; str seeding hashes with SHA-512, so it is stable across runs."""
    return random.Random(":".join([str(seed), *map(str, parts)]))


def uuid4(rng: random.Random) -> str:
    n = rng.getrandbits(128)
    # Set the version (4) and variant (10xx) bits like uuid.uuid4 does.
    n = (n & ~(0xF << 76)) | (4 << 76)
    n = (n & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex_id(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


# Random strings are randbytes mapped through a 256-entry table (one C call each) rather than
# rng.choices: this is the simulator's hottest path after JSON encoding. The modulo bias of a
# 62-letter alphabet is irrelevant for ids.
def _table(alphabet: bytes) -> bytes:
    return bytes(alphabet[b % len(alphabet)] for b in range(256))


_T_B32 = _table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_T_ALNUM = _table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_T_B64 = _table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_T_UPPER_DIGITS = _table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def b64(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).translate(_T_B64).decode()


def b32(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).translate(_T_B32).decode()


def alnum(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).translate(_T_ALNUM).decode()


def access_key(rng: random.Random, prefix: str = "ASIA") -> str:
    return prefix + b32(rng, 16)


def role_id(rng: random.Random) -> str:
    return "AROA" + b32(rng, 17)


def session_token(rng: random.Random) -> str:
    # Real STS session tokens are ~400-1000 base64 chars starting with "IQoJb3JpZ2luX2Vj"
    # ("\x21\n\tzorigin_ec"); the prefix lets ingestion tests recognise one to redact.
    return "IQoJb3JpZ2luX2Vj" + b64(rng, 344) + "=="


def s3_request_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016X}"


def ddb_request_id(rng: random.Random) -> str:
    return rng.randbytes(52).translate(_T_UPPER_DIGITS).decode()


def extended_request_id(rng: random.Random) -> str:
    return alnum(rng, 14) + "="


def fingerprint(secret: str) -> str:
    """How tokens appear anywhere in our logs: never the token, a short SHA-256 prefix."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]
