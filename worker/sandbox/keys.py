"""RSA signing keys, the JWKS that publishes them, and rotation.

Two keys are published, as Constant Contact's JWKS snapshot shows. Rotation makes a new signing
key and keeps the previous signing key published, so clients are tested for re-fetching by kid.
RSA generation is slow (~0.1 s), so key material is pooled per process; each server still gets
its own random kid values.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

_pool: list[rsa.RSAPrivateKey] = []
_pool_lock = threading.Lock()


def _pooled_key(index: int) -> rsa.RSAPrivateKey:
    with _pool_lock:
        while len(_pool) <= index:
            _pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _pool[index]


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {"kty": "RSA", "alg": "RS256", "kid": self.kid, "use": "sig",
                "e": public["e"], "n": public["n"]}


def _kid() -> str:
    return secrets.token_urlsafe(32)


class KeyRing:
    def __init__(self) -> None:
        self._signing = SigningKey(_kid(), _pooled_key(0))
        self._other = SigningKey(_kid(), _pooled_key(1))
        self._generation = 2
        self._jwks: dict[str, Any] = {}
        self._publish()

    def _publish(self) -> None:
        self._jwks = {"keys": [self._signing.jwk(), self._other.jwk()]}

    @property
    def signing_kid(self) -> str:
        return self._signing.kid

    def published_kids(self) -> set[str]:
        return {self._signing.kid, self._other.kid}

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    def rotate(self) -> list[str]:
        """New signing key; the previous signing key stays published, the oldest one goes."""
        fresh = SigningKey(_kid(), _pooled_key(self._generation))
        self._generation += 1
        self._other, self._signing = self._signing, fresh
        self._publish()
        return [self._signing.kid, self._other.kid]

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._signing.private, algorithm="RS256",
                          headers={"kid": self._signing.kid})
