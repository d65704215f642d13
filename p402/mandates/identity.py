"""Budget-owner identities: a secp256k1 key, its Ethereum address, an ERC-8004 registration file.

A budget owner is identified by an Ethereum address, the identity ERC-8004
uses for agents. `new_identity` makes a key and the registration file an owner
(or an agent) can publish and register on an ERC-8004 Identity Registry; the
`registrations` list stays empty until that happens, because only the registry
assigns an `agentId`.

Key files are written with mode 0600 and refused when others can read them
(as ssh does): a budget owner's key can raise budgets. A key file is either
plain JSON holding the hex key, or, when a password is given, a standard
Web3 Secret Storage (keystore v3) file that any Ethereum wallet can import.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, Literal

from eth_account import Account

from p402.core.scopes import ADDRESS_RE
from p402.errors import ConfigError
from p402.mandates.eip712 import DEFAULT_CHAIN_ID, SECP256K1_N

__all__ = [
    "REGISTRATION_TYPE",
    "KEY_FILE_KIND",
    "new_identity",
    "registration_file",
    "agent_registry_id",
    "caip10",
    "address_of",
    "normalise_address",
    "save_key",
    "load_key",
]

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
KEY_FILE_KIND = "p402-identity-key"
_ADDRESS = ADDRESS_RE
_PRIVATE_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")
# Key derivation work for password-protected key files: eth-account's default
# (scrypt, n=2**18) takes about a second, which is right for a key that raises budgets.
_KDF: Literal["scrypt"] = "scrypt"


def address_of(private_key: str | bytes) -> str:
    """The checksummed Ethereum address of a private key."""
    return str(Account.from_key(private_key).address)


def normalise_address(value: object, where: str = "address") -> str:
    """Validate an address and return it lowercase (the form p402 compares and stores)."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not an Ethereum address (0x and 40 hex digits)")
    return value.lower()


def caip10(address: str, chain_id: int = DEFAULT_CHAIN_ID) -> str:
    """A CAIP-10 account id, the form ERC-8004 uses for wallets: `eip155:<chain>:<address>`."""
    return f"eip155:{chain_id}:{address}"


def agent_registry_id(registry_address: str, chain_id: int = DEFAULT_CHAIN_ID) -> str:
    """An ERC-8004 `agentRegistry` value: `eip155:<chain>:<identity registry address>`."""
    return f"eip155:{chain_id}:{normalise_address(registry_address, 'agentRegistry')}"


def registration_file(name: str, address: str, *, description: str | None = None, image: str = "",
                      chain_id: int = DEFAULT_CHAIN_ID) -> dict[str, Any]:
    """An ERC-8004 registration file (registration-v1) naming `address` as the agent wallet."""
    if not name or not isinstance(name, str):
        raise ConfigError("identity name must be a non-empty string")
    return {
        "type": REGISTRATION_TYPE,
        "name": name,
        "description": description or f"{name}: budget owner identity for the p402 AI budget gateway",
        "image": image,
        "services": [{"name": "agentWallet", "endpoint": caip10(address, chain_id)}],
        "active": True,
        # Filled after minting on an Identity Registry: {"agentId": ..., "agentRegistry": "eip155:..."}.
        "registrations": [],
        "supportedTrust": [],
    }


def new_identity(name: str, *, chain_id: int = DEFAULT_CHAIN_ID,
                 description: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """Make a fresh secp256k1 key; return (private key 0x-hex, checksummed address, registration file)."""
    while True:
        # A uniformly random 32-byte value is a valid key unless it is 0 or >= n
        # (probability about 2**-128); draw again in that case.
        raw = secrets.token_bytes(32)
        if 0 < int.from_bytes(raw, "big") < SECP256K1_N:
            break
    private_key = "0x" + raw.hex()
    address = address_of(private_key)
    return private_key, address, registration_file(name, address, description=description, chain_id=chain_id)


def save_key(path: str | os.PathLike[str], private_key: str, *, name: str = "", password: str | None = None,
             overwrite: bool = False, kdf_iterations: int | None = None) -> Path:
    """Write a key file readable only by its owner (0600). Refuses to replace a file unless `overwrite`.

    With `password`, the file is an encrypted keystore v3 (scrypt; `kdf_iterations`
    lowers the work factor, for tests only).
    """
    target = Path(path)
    if not _PRIVATE_KEY.fullmatch(private_key):
        raise ConfigError("a private key is 64 hex digits (optionally 0x-prefixed)")
    key_hex = "0x" + private_key.removeprefix("0x").lower()
    address = address_of(key_hex)
    if password is not None:
        body: dict[str, Any] = Account.encrypt(bytes.fromhex(key_hex[2:]), password, kdf=_KDF, iterations=kdf_iterations)
        body["p402"] = {"kind": KEY_FILE_KIND, "name": name, "address": address}
    else:
        body = {"kind": KEY_FILE_KIND, "name": name, "address": address, "private_key": key_hex}
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{target} exists already; refusing to overwrite a key file") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        # The mode passed to os.open only applies to new files (and is masked by
        # the umask); fchmod makes an overwritten file private too.
        os.fchmod(handle.fileno(), 0o600)
        json.dump(body, handle, indent=2)
        handle.write("\n")
    return target


def load_key(path: str | os.PathLike[str], password: str | None = None) -> tuple[str, str]:
    """Read a key file; return (private key 0x-hex, checksummed address).

    Refuses files that group or others may read, and files whose stated
    address does not belong to the key inside (a corrupted or edited file).
    """
    source = Path(path)
    try:
        mode = source.stat().st_mode
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"key file {source} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"key file {source} is not UTF-8 text (a key file is JSON)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read key file {source}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key file {source} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                          f"run: chmod 600 {source}")
    try:
        body = json.loads(text)
    except ValueError:
        raise ConfigError(f"key file {source} is not JSON") from None
    if not isinstance(body, dict):
        raise ConfigError(f"key file {source} is not a p402 key file")
    key_hex = _key_from_body(body, source, password)
    address = address_of(key_hex)
    # Keystore v3 writes the address without 0x; p402's plain files write it with.
    stated = body.get("address") or (body.get("p402") or {}).get("address")
    if stated and str(stated).lower().removeprefix("0x") != address.lower().removeprefix("0x"):
        raise ConfigError(f"key file {source} says address {stated} but its key belongs to {address}")
    return key_hex, address


def _key_from_body(body: dict[str, Any], source: Path, password: str | None) -> str:
    if "crypto" in body or "Crypto" in body:
        if password is None:
            raise ConfigError(f"key file {source} is encrypted; a password is needed")
        try:
            return "0x" + bytes(Account.decrypt(body, password)).hex()
        except ValueError:
            raise ConfigError(f"wrong password for key file {source}") from None
    key = body.get("private_key")
    if body.get("kind") != KEY_FILE_KIND or not isinstance(key, str) or not _PRIVATE_KEY.fullmatch(key):
        raise ConfigError(f"key file {source} is not a p402 key file (no private_key)")
    return "0x" + key.removeprefix("0x").lower()
