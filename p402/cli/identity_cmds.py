"""`p402 identity new`, `p402 mandate sign|verify|revoke`, `p402 override sign`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from p402.cli.main import CliError
from p402.mandates import DEFAULT_CHAIN_ID, load_key, new_identity, save_key, sign_mandate, sign_override
from p402.mandates import sign_revocation, verify

__all__ = ["add_commands"]

# EIP-712 encodes chainId as uint256, and EIP-155 chain ids start at 1: anything else
# failed deep in the ABI encoder with a traceback, or signed for a chain that cannot exist.
MAX_CHAIN_ID = 2**256 - 1


def add_commands(sub: Any, add: Any, store_args: Any, parser_class: Any) -> None:
    identity = add("identity", None, "budget owners' secp256k1 identities (ERC-8004)")
    isub = identity.add_subparsers(dest="identity_command", metavar="SUBCOMMAND", parser_class=parser_class)
    p = isub.add_parser("new", help="make a key file and an ERC-8004 registration file",
                        description="make a key file (0600) and an ERC-8004 registration file")
    p.set_defaults(func=cmd_identity_new)
    p.add_argument("--name", default="owner", help="the owner's name, in the registration file and the default "
                                                   "file names (default: owner)")
    p.add_argument("--key", default=None, help="key file to write (default NAME.key.json)")
    p.add_argument("--registration", default=None, help="registration file to write (default NAME.registration.json)")
    p.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID, help=f"EIP-155 chain id (default {DEFAULT_CHAIN_ID})")

    mandate = add("mandate", None, "sign, verify and revoke budget mandates")
    msub = mandate.add_subparsers(dest="mandate_command", metavar="SUBCOMMAND", parser_class=parser_class)
    p = msub.add_parser("sign", help="sign a mandate from a YAML spec", description="sign a mandate from a YAML spec")
    p.set_defaults(func=cmd_mandate_sign)
    _sign_args(p)
    p = msub.add_parser("verify", help="verify a signed document; exit 0 when it checks out",
                        description="verify a signed mandate, override or revocation; exit 0 when it checks out")
    p.set_defaults(func=cmd_mandate_verify)
    p.add_argument("file", help="the signed document (JSON)")
    p.add_argument("--owner", help="also require this signer address")
    p.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID, help="EIP-155 chain id")
    p = msub.add_parser("revoke", help="sign a revocation of a mandate", description="sign a revocation of a mandate")
    p.set_defaults(func=cmd_mandate_revoke)
    p.add_argument("--digest", required=True, help="the mandate's digest (0x...)")
    p.add_argument("--reason", required=True, help="why it is revoked")
    p.add_argument("--key", required=True, help="the owner's key file")
    p.add_argument("--out", help="write the document here (default: stdout)")
    p.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID, help="EIP-155 chain id")

    override = add("override", None, "sign time-boxed budget raises")
    osub = override.add_subparsers(dest="override_command", metavar="SUBCOMMAND", parser_class=parser_class)
    p = osub.add_parser("sign", help="sign an override from a YAML spec", description="sign an override from a YAML spec")
    p.set_defaults(func=cmd_override_sign)
    _sign_args(p)


def _sign_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="YAML or JSON spec (see docs/mandates.md)")
    p.add_argument("--key", required=True, help="the budget owner's key file")
    p.add_argument("--out", help="write the document here (default: stdout)")
    p.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID, help="EIP-155 chain id")


def _chain_id(value: int) -> int:
    if not 1 <= value <= MAX_CHAIN_ID:
        raise CliError(f"--chain-id {value} is not a chain id (a positive integer below 2**256)", 2)
    return value


def _read_spec(path: str) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{path}: no such spec file", 2) from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text (a spec is YAML or JSON)", 2) from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}", 2) from None
    if not isinstance(spec, dict):
        raise CliError(f"{path}: the spec must be a mapping", 2)
    return spec


def _key(path: str) -> str:
    try:
        return load_key(path)[0]
    except FileNotFoundError:
        raise CliError(f"{path}: no such key file", 2) from None


def _emit(document: dict[str, Any], out: str | None) -> None:
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if out:
        Path(out).write_text(text)
        print(f"wrote {out} (digest {document['proof'].get('digest', '?')})", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_identity_new(args: argparse.Namespace) -> int:
    key, address, registration = new_identity(args.name, chain_id=_chain_id(args.chain_id))
    key_path = args.key or f"{args.name}.key.json"
    reg_path = args.registration or f"{args.name}.registration.json"
    if Path(reg_path).exists():
        raise CliError(f"{reg_path} exists; choose another --name (or --registration)", 2)
    try:
        save_key(key_path, key, name=args.name)
    except FileExistsError:
        raise CliError(f"{key_path} exists; choose another --name (or --key)", 2) from None
    Path(reg_path).write_text(json.dumps(registration, indent=2) + "\n")
    print(f"address {address}\nkey file {key_path} (keep it secret; mode 0600)\nregistration {reg_path}")
    return 0


def cmd_mandate_sign(args: argparse.Namespace) -> int:
    chain_id = _chain_id(args.chain_id)
    _emit(sign_mandate(_read_spec(args.spec), _key(args.key), chain_id=chain_id, now=datetime.now(timezone.utc)),
          args.out)
    return 0


def cmd_override_sign(args: argparse.Namespace) -> int:
    chain_id = _chain_id(args.chain_id)
    _emit(sign_override(_read_spec(args.spec), _key(args.key), chain_id=chain_id, now=datetime.now(timezone.utc)),
          args.out)
    return 0


def cmd_mandate_revoke(args: argparse.Namespace) -> int:
    chain_id = _chain_id(args.chain_id)
    _emit(sign_revocation(args.digest, args.reason, _key(args.key), chain_id=chain_id,
                          now=datetime.now(timezone.utc)), args.out)
    return 0


def cmd_mandate_verify(args: argparse.Namespace) -> int:
    chain_id = _chain_id(args.chain_id)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{args.file}: no such file", 2) from None
    except UnicodeDecodeError:
        raise CliError(f"{args.file}: not UTF-8 text (a signed document is JSON)", 2) from None
    ok, reason = verify(text, chain_id=chain_id, owner=args.owner, now=datetime.now(timezone.utc))
    if not ok:
        raise CliError(reason, 1)
    print(reason)
    return 0
