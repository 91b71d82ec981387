"""Temporal payloads encrypted at rest: AES-256-GCM with a key ring (`EncryptionCodec`).

Every payload the API, the CLI and the worker send to Temporal (workflow and activity inputs
and results, signals, updates, queries, failure details) is encrypted by the one data
converter `temporal_client.data_converter` builds, so the server's history, and whoever opens
the Temporal UI, sees ciphertext instead of IBANs and emails.

An encrypted payload: metadata ``encoding: binary/encrypted`` and ``encryption-key-id: <id>``;
data = a random 96-bit nonce followed by AES-256-GCM(the original payload, serialized), with
the key id as associated data (moving a ciphertext to another key id fails too). The key ring
comes from WALLETFLOW_CODEC_KEYS, ``"k2:<base64 of 32 bytes>,k1:<base64>"``: the first key
encrypts, every key decrypts (rotation: put the new key first, keep the old ones while
histories written with them are still read). Decoding passes payloads that are not encrypted
through unchanged: a signal sent from the Temporal UI or ``temporal workflow signal`` is plain
JSON and still reaches the workflow."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
# The development key ring (dev stack, tests): public, so it protects nothing; production mode
# refuses it (settings.production_problems).
DEV_CODEC_KEY = "r6L0oEKFdFFJ300DvJ8Nv0WLFHfGRjYqe8GZHSxHtPE="
DEV_CODEC_KEYS = f"dev:{DEV_CODEC_KEY}"
_KEY_ID_SHAPE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PayloadDecryptionError(ValueError):
    """An encrypted payload that cannot be decrypted: unknown key id, or altered (GCM's tag
    does not verify) — never returned as garbage."""


def parse_key_ring(raw: str) -> dict[str, bytes]:
    """``"id:base64,id:base64"`` → ``{id: 32-byte key}`` in order (the first encrypts).
    Errors name the entry by position or id, never the key material."""
    ring: dict[str, bytes] = {}
    for n, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, b64 = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID_SHAPE.match(key_id):
            raise ValueError(f"entry {n}: expected <key id>:<base64 key> (id: letters, digits,"
                             " '.', '_', '-')")
        if key_id in ring:
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256), not {len(key)}")
        ring[key_id] = key
    if not ring:
        raise ValueError("no key: expected <key id>:<base64 of 32 bytes>[,…]")
    return ring


def new_key() -> str:
    """A fresh key, base64: ``python -c 'import payload_codec as c; print(c.new_key())'``."""
    return base64.b64encode(os.urandom(32)).decode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; the ring's first key encrypts, all decrypt."""

    def __init__(self, ring: dict[str, bytes]) -> None:
        if not ring:
            raise ValueError("an empty key ring")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.items()}
        self.key_id = next(iter(ring))

    @classmethod
    def from_keys(cls, raw: str) -> EncryptionCodec:
        return cls(parse_key_ring(raw))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.key_id.encode()
        sealed = self._ciphers[self.key_id].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # plain (the UI's or the CLI's signal input): as it is
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(f"unknown encryption key id {key_id!r}")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except (InvalidTag, ValueError):
            raise PayloadDecryptionError(
                f"payload does not decrypt with key {key_id!r} (altered or truncated)") from None
        return Payload.FromString(plain)
