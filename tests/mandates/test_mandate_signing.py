"""The CLI-facing functions: spec -> signed document, verify -> (ok, reason), signing with other tools."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml
from eth_account import Account
from mandate_helpers import NOW, OWNER_KEY, STRANGER_KEY, mandate_spec, override_spec

from p402.errors import ConfigError
from p402.mandates.documents import verify_document
from p402.mandates.errors import MandateRejected
from p402.mandates.identity import address_of, load_key, new_identity, save_key
from p402.mandates.signing import (assemble, sign_mandate, sign_override, unsigned_mandate, unsigned_revocation,
                                   verify)

OWNER = address_of(OWNER_KEY)


def test_sign_from_a_yaml_spec_with_a_key_file(tmp_path: object) -> None:
    key, address, _ = new_identity("eng-owner")
    path = save_key(tmp_path / "owner.key", key)  # type: ignore[operator]
    # YAML turns unquoted timestamps into aware datetimes; they are accepted as they are.
    spec = yaml.safe_load("""
        budget: eng-month
        scope: department:eng
        cap_usd: "5000.00"
        period: month
        valid_from: 2026-01-01T00:00:00Z
        valid_until: 2026-12-31T23:59:59Z
        description: Eng LLM spend, 2026
    """)
    document = sign_mandate(spec, load_key(path)[0], now=NOW)
    ok, reason = verify(document, owner=address, now=NOW)
    assert ok, reason
    assert "budget eng-month (department:eng, $5000.00 per month)" in reason
    assert document["content"]["p402"]["description"] == "Eng LLM spend, 2026"


def test_verify_reports_why_not() -> None:
    document = sign_mandate(mandate_spec(), OWNER_KEY, now=NOW)
    assert verify(document, owner=address_of(STRANGER_KEY)) == \
        (False, f"SIGNATURE_INVALID: signed by {OWNER.lower()}, not by the budget owner "
                f"{address_of(STRANGER_KEY).lower()}")
    ok, reason = verify(document, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert not ok and reason.startswith("MANDATE_INACTIVE") and "expired" in reason
    ok, reason = verify(document, now=datetime(2025, 12, 1, tzinfo=timezone.utc))
    assert ok and "not valid yet" in reason
    document["content"]["constraints"][0]["max"] = "1.00"
    ok, reason = verify(document)
    assert not ok and reason.startswith("SIGNATURE_INVALID: content:")
    ok, reason = verify(b"nonsense")
    assert not ok and reason.startswith("INVALID_DOCUMENT: document: is not valid JSON")


def test_verify_an_override() -> None:
    document = sign_override(override_spec(), OWNER_KEY, now=NOW)
    ok, reason = verify(document, owner=OWNER, now=NOW)
    assert ok and "+$250.00" in reason
    assert verify(document, now=datetime(2026, 3, 21, tzinfo=timezone.utc))[0] is False


@pytest.mark.parametrize("spec, words", [
    (mandate_spec(cap_usd=5000.0), "quoted decimal string"),
    (mandate_spec(cap=5), "unknown key 'cap'"),
    (mandate_spec(valid_until=None), "valid_until is required"),
    (mandate_spec(period="fortnight"), "period must be one of"),
    (mandate_spec(scope="dept:eng"), "scope kind 'dept'"),
    (mandate_spec(valid_from="2026-01-01"), "2026-01-01"),
    (mandate_spec(nonce=-3), "nonce"),
    (mandate_spec(valid_until="9999-12-31T23:59:59-00:01"), "valid_until: .* after 9999-12-31T23:59:59Z"),
    (mandate_spec(valid_from="1969-12-31T23:59:59Z"), "valid_from: .* before 1970-01-01T00:00:00Z"),
    (mandate_spec(agent={"agentRegistry": "x", "agentId": "1", "agentWallet": OWNER}), "agentRegistry"),
])
def test_bad_mandate_specs_get_one_clear_line(spec: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        sign_mandate(spec, OWNER_KEY, now=NOW)


@pytest.mark.parametrize("spec, words", [
    (override_spec(extra_usd="0"), "more than zero"),
    (override_spec(window_end="2026-03-01T00:00:00Z"), "after window_start"),
    (override_spec(amount="5"), "unknown key"),
    (override_spec(window_end="9999-12-31T23:59:59-00:01"), "window_end: .* after 9999-12-31T23:59:59Z"),
])
def test_bad_override_specs_get_one_clear_line(spec: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        sign_override(spec, OWNER_KEY, now=NOW)


def test_an_agent_identity_is_bound_into_the_mandate() -> None:
    wallet = address_of(STRANGER_KEY)
    agent = {"agentRegistry": "eip155:8453:0x8004A169FB4a3325136EB29fA0ceB6D2e539a432", "agentId": 22,
             "agentWallet": wallet}
    document = sign_mandate(mandate_spec(agent=agent), OWNER_KEY, now=NOW)
    terms = verify_document(document).terms
    assert terms is not None and terms.agent is not None
    assert (terms.agent.agent_id, terms.agent.agent_wallet) == ("22", wallet)
    assert document["content"]["cnf"] == {"kid": f"eip155:8453:{wallet}"}


def test_signing_with_another_tool_then_assembling() -> None:
    # What a hardware or browser wallet does: eth_signTypedData_v4 over our typed data.
    content, typed = unsigned_mandate(mandate_spec(), now=NOW)
    signature = "0x" + Account.sign_typed_data(OWNER_KEY, full_message=typed).signature.hex()
    document = assemble(content, typed, signature)
    assert document["proof"]["signer"] == OWNER
    assert verify(document, owner=OWNER, now=NOW)[0]
    # A signature over other data recovers to some other address: the document
    # then names that address as its signer, and is not the owner's.
    _, other_typed = unsigned_revocation("0x" + "12" * 32, "x", now=NOW)
    stray = "0x" + Account.sign_typed_data(OWNER_KEY, full_message=other_typed).signature.hex()
    assert assemble(content, typed, stray)["proof"]["signer"] != OWNER
    with pytest.raises(MandateRejected, match="v must be"):
        assemble(content, typed, signature[:-2] + "1d")
