"""Signed documents with integer fields at and past their range, through the admin API and `p402 mandate verify`.

A document's integer fields (the EIP-712 `uint64` times and `uint256` nonces,
`proof.chainId`, and a mandate content's `iat` and `exp`) are set to values
around and beyond what they may hold, and signed again as a wallet would sign
them whenever EIP-712 can encode the value, so the document gets as far as it
can. Whatever the value, the gateway answers with a JSON error naming a field
(never a 500) and the CLI with one line (never a traceback); a value no
document may hold is refused naming the field that holds it.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import openai
import orjson
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from p402.cli.main import main
from p402.mandates import MandateRejected, new_identity, sign_mandate, sign_override, sign_revocation
from p402.mandates.content import content_hash, format_instant
from p402.mandates.documents import derived_content, make_document
from p402.mandates.eip712 import MAX_TIME_S, TIME_FIELDS, typed_data
from tests.gatewaykit import ADMIN_TOKEN, FINANCE_TOKEN, Running, config_of, gateway, org
from tests.web.test_admin import call

LATEST = "9999-12-31T23:59:59Z"  # MAX_TIME_S
VALUES: list[object] = [0, -1, MAX_TIME_S, MAX_TIME_S + 1, 2**63, 2**64 - 1, 2**64, 10**30, "1767225600", None]
FIELDS = {
    "mandate": ["proof.message.validFrom", "proof.message.validUntil", "proof.message.nonce", "proof.chainId",
                "content.iat", "content.exp"],
    "override": ["proof.message.windowStart", "proof.message.windowEnd", "proof.message.nonce", "proof.chainId"],
    "revocation": ["proof.message.ts", "proof.chainId"],
}
CASES = [(kind, field, value) for kind, fields in FIELDS.items() for field in fields for value in VALUES]
_BITS = {"nonce": 256}  # every other message integer is a uint64


def post(gw: Running, path: str, text: str, token: str = ADMIN_TOKEN) -> tuple[int, dict[str, Any]]:
    """POST JSON text as written (Python's json writes integers of any size, as a hand-edited file may)."""
    return call(gw, "POST", path.removeprefix("/admin/v1"), token=token, raw=text.encode())


def wallet_sign(document: dict[str, Any], key: str) -> dict[str, Any]:
    """Sign the document's message again, as any wallet would, with no p402 check in the way."""
    proof = document["proof"]
    typed = typed_data(proof["primaryType"], proof["message"], proof["chainId"])
    signed = Account.sign_message(encode_typed_data(full_message=typed), key)
    return make_document(document["content"], proof["primaryType"], proof["message"], proof["signer"],
                         "0x" + bytes(signed.signature).hex(), "0x" + bytes(signed.message_hash).hex(),
                         proof["chainId"])


def _is_uint(value: object, bits: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << bits


def never_valid(field: str, value: object) -> bool:
    """Whether no document may hold `value` in `field`, whatever else it says."""
    name = field.rsplit(".", 1)[1]
    if field == "proof.chainId":
        return value != 1  # the gateway verifies chain 1
    if field == "content.exp":
        return True  # it must equal not_after, which none of VALUES is
    if field.startswith("proof.message."):
        # JSON integers past 64 bits reach p402 as floats (orjson), so a uint256 above them is refused too.
        return not _is_uint(value, 64) or (name in TIME_FIELDS and value > MAX_TIME_S)  # type: ignore[operator]
    return False  # content.iat: p402 does not read it


def mutated(document: dict[str, Any], field: str, value: object, key: str) -> str:
    """`document` with `field` set to `value`, made consistent and signed again where EIP-712 allows; as JSON text."""
    doc = copy.deepcopy(document)
    proof, message = doc["proof"], doc["proof"]["message"]
    name = field.rsplit(".", 1)[1]
    if field == "proof.chainId":
        proof["chainId"] = value
        signable = _is_uint(value, 256)
    elif field.startswith("content."):
        doc["content"][name] = value
        try:
            message["contentHash"] = content_hash(doc["content"])
        except MandateRejected:
            pass  # RFC 8785 cannot canonicalise it: the stale hash stays
        signable = True
    else:
        message[name] = value
        signable = _is_uint(value, _BITS.get(name, 64))
        in_range = signable and name in TIME_FIELDS and value <= MAX_TIME_S  # type: ignore[operator]
        if in_range and proof["primaryType"] == "BudgetMandate":
            # Say the same time in the content, so the document reaches the book.
            dates = doc["content"]["constraints"][2]
            dates["not_before" if name == "validFrom" else "not_after"] = format_instant(value)  # type: ignore[arg-type]
            doc["content"]["exp"] = message["validUntil"]
            message["contentHash"] = content_hash(doc["content"])
        elif in_range:
            doc["content"] = derived_content(proof["primaryType"], message)
    return json.dumps(wallet_sign(doc, key) if signable else doc)


def verify_cli(capsys: pytest.CaptureFixture[str], path: Path, text: str) -> tuple[int, str]:
    path.write_text(text)
    code = main(["mandate", "verify", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and err.count("\n") <= 1 and (code == 0) == (not err), (code, out, err)
    return code, err


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, str, dict[str, dict[str, Any]]]]:
    """A gateway whose budget `ap-agent` has a mandate, and a valid document of each kind signed by its owner."""
    key, owner, _ = new_identity("ap-owner")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    budgets = [{"id": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
                "requires_mandate": True, "owner": owner}]
    with gateway(config_of(org(tmp_path_factory.mktemp("fields"), budgets))) as gw:
        mandate = sign_mandate({"budget": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "50", "period": "month",
                                "valid_from": (now - timedelta(days=1)).isoformat(),
                                "valid_until": (now + timedelta(days=30)).isoformat()}, key)
        assert post(gw, "/admin/v1/mandates", json.dumps(mandate))[0] == 201
        override = sign_override({"budget": "ap-agent", "extra_usd": "1",
                                  "window_start": (now - timedelta(hours=1)).isoformat(),
                                  "window_end": (now + timedelta(hours=1)).isoformat()}, key)
        revocation = sign_revocation(mandate["proof"]["digest"], "agent retired", key)
        yield gw, key, {"mandate": mandate, "override": override, "revocation": revocation}


def _path_of(kind: str, document: dict[str, Any]) -> str:
    if kind == "revocation":
        return f"/admin/v1/mandates/{document['proof']['message']['mandate']}/revoke"
    return f"/admin/v1/{kind}s"


@pytest.mark.parametrize("kind, field, value", CASES, ids=[f"{k}-{f}-{v!r}" for k, f, v in CASES])
def test_integer_fields_out_of_range_are_refused_by_field(signed: tuple[Running, str, dict[str, dict[str, Any]]],
                                                          kind: str, field: str, value: object, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    gw, key, documents = signed
    text = mutated(documents[kind], field, value, key)
    status, body = post(gw, _path_of(kind, documents[kind]), text, FINANCE_TOKEN if kind == "override" else ADMIN_TOKEN)
    assert status < 500, body
    if status >= 400:
        assert body["error"]["param"], body  # every refusal names the part of the document at fault
    code, err = verify_cli(capsys, tmp_path / "doc.json", text)
    if never_valid(field, value):
        assert 400 <= status < 500 and body["error"]["param"] == field, body
        assert code == 1 and f"{field}:" in err


def test_times_through_the_last_second_of_the_year_9999_are_taken(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    key, owner, _ = new_identity("ap-owner")
    budgets = [{"id": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "100", "period": "month",
                "requires_mandate": True, "owner": owner}]
    with gateway(config_of(org(tmp_path, budgets))) as gw:
        mandate = sign_mandate({"budget": "ap-agent", "scope": "workflow:ap-agent", "cap_usd": "50", "period": "month",
                                "valid_until": LATEST}, key)
        status, body = post(gw, "/admin/v1/mandates", json.dumps(mandate))
        assert status == 201 and body["valid_until"] == LATEST
        client = gw.openai("carol")
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=5, extra_headers={"X-P402-Workflow": "ap-agent"})
        assert reply.choices  # admitted under a mandate that never ends
        override = sign_override({"budget": "ap-agent", "extra_usd": "1", "window_start": "9999-12-24T23:59:59Z",
                                  "window_end": LATEST}, key)
        status, body = post(gw, "/admin/v1/overrides", json.dumps(override), FINANCE_TOKEN)
        assert status == 201 and body["window_end"] == LATEST
        for document in (mandate, override):
            assert verify_cli(capsys, tmp_path / "ok.json", json.dumps(document))[0] == 0
        revocation = sign_revocation(mandate["proof"]["digest"], "retired", key)
        revocation["proof"]["message"]["ts"] = MAX_TIME_S  # p402 signs the time now; a wallet signs what it is shown
        revocation["content"]["ts"] = LATEST
        status, body = post(gw, f"/admin/v1/mandates/{mandate['proof']['digest']}/revoke",
                            json.dumps(wallet_sign(revocation, key)))
        assert status == 201, body
        with pytest.raises(openai.APIStatusError) as denied:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=5, extra_headers={"X-P402-Workflow": "ap-agent"})
        assert denied.value.body["p402"]["deny_code"] == "MANDATE_INACTIVE"


@pytest.mark.parametrize("field", ["windowStart", "windowEnd"])
def test_a_time_one_second_past_the_year_9999_is_a_400_naming_it(signed: tuple[Running, str,
                                                                               dict[str, dict[str, Any]]],
                                                                  field: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    gw, key, documents = signed
    for too_late, resign in ((MAX_TIME_S + 1, True), (99999999999999, True), (99999999999999, False)):
        document = copy.deepcopy(documents["override"])
        document["proof"]["message"][field] = too_late
        text = json.dumps(wallet_sign(document, key) if resign else document)  # signed by the owner, or tampered
        status, body = post(gw, "/admin/v1/overrides", text, FINANCE_TOKEN)
        assert status == 400 and body["error"]["code"] == "INVALID_DOCUMENT", body
        assert body["error"]["param"] == f"proof.message.{field}" and "9999-12-31T23:59:59Z" in body["error"]["message"]
        code, err = verify_cli(capsys, tmp_path / "o_bad.json", text)
        assert code == 1 and f"proof.message.{field}: is after 9999-12-31T23:59:59Z" in err


def test_a_mandate_written_in_9999_but_past_it_by_its_offset_is_a_400(
        signed: tuple[Running, str, dict[str, dict[str, Any]]]) -> None:
    gw, key, documents = signed
    document = copy.deepcopy(documents["mandate"])
    document["content"]["constraints"][2]["not_after"] = "9999-12-31T23:59:59-00:01"  # 10000-01-01T00:00:59Z
    document["content"]["exp"] = document["proof"]["message"]["validUntil"] = MAX_TIME_S + 60
    document["proof"]["message"]["contentHash"] = content_hash(document["content"])
    status, body = post(gw, "/admin/v1/mandates", json.dumps(wallet_sign(document, key)))
    assert status == 400 and body["error"]["param"] == "proof.message.validUntil", body
