"""The gateway's checkpoint signing key: Ed25519, made on first use, kept in a 0600 PEM file.

An auditor holds only the public key (raw hex or PEM, and its `key_id`
fingerprint) and can then check every checkpoint offline. The private key never
leaves the file it was generated into.

Creating the key is race-free across processes: the PEM is written to a private
temporary file and hard-linked into place, which fails if another process won;
the loser then loads the winner's key. A key file readable by group or others is
refused, as ssh refuses one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p402.errors import ConfigError

__all__ = ["Signer", "PublicKeyLike", "load_public_key", "key_id_of", "public_hex", "public_pem", "verify_signature"]

PublicKeyLike = Ed25519PublicKey | bytes | str
_KEY_ID_HEX_CHARS = 32  # 128 bits of SHA-256: a name for the key, not its proof


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: `ed25519:` + the first 128 bits of SHA-256 over the raw public key, hex."""
    return "ed25519:" + hashlib.sha256(_raw(public_key)).hexdigest()[:_KEY_ID_HEX_CHARS]


def public_hex(public_key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key as 64 hex characters."""
    return _raw(public_key).hex()


def public_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as a SubjectPublicKeyInfo PEM block (what `openssl pkey -pubin` reads)."""
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(value: PublicKeyLike) -> Ed25519PublicKey:
    """A public key from a key object, 32 raw bytes, 64 hex chars, or PEM text; ValueError otherwise."""
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("the PEM public key is not an Ed25519 key")
            return key
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ValueError("a public key must be 64 hex characters or a PEM block") from None
    if len(value) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(value)}")
    return Ed25519PublicKey.from_public_bytes(value)


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when `signature` is the key's Ed25519 signature of `message`."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class Signer:
    """An Ed25519 private key and what is published about it."""

    __slots__ = ("_private", "public_key", "key_id", "path")

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)
        self.path = path

    @classmethod
    def generate(cls) -> "Signer":
        """A fresh key that lives only in memory (tests, throwaway ledgers)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | Path) -> "Signer":
        """Load the key at `path`, creating it (0600, parent 0700) if it does not exist yet."""
        path = Path(path)
        if not path.exists():
            _create(path)
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> "Signer":
        try:
            mode = path.stat().st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(f"{path}: the signing key is readable by other users; run: chmod 600 {path}")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the signing key: {exc.strerror or exc}") from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: the signing key must be Ed25519")
        return cls(key, path)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @property
    def public_hex(self) -> str:
        return public_hex(self.public_key)

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_key)


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                # link() is atomic and refuses to replace: two processes creating
                # the key at once end up sharing whichever key was linked first.
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the signing key: {exc.strerror or exc}") from exc
