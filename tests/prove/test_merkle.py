"""RFC 6962/9162 Merkle trees: the published test vectors, and proofs for every shape of tree."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from p402.prove.merkle import (EMPTY_ROOT, Frontier, consistency_proof, inclusion_proof, leaf_hash, root_of,
                               verify_consistency, verify_inclusion)

# The Certificate Transparency reference leaves and tree heads (RFC 6962 test data).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_HASHES = [leaf_hash(leaf) for leaf in CT_LEAVES]


def hexes(path: list[bytes]) -> list[str]:
    return [h.hex() for h in path]


def leaves_of(n: int) -> list[bytes]:
    """n distinct 32-byte leaves, like ledger row hashes."""
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def test_tree_heads_match_the_rfc_vectors_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for n in range(len(CT_LEAVES) + 1):
        assert root_of(CT_HASHES[:n]).hex() == CT_ROOTS[n]
        frontier = Frontier()
        frontier.extend(CT_LEAVES[:n])
        assert frontier.root().hex() == CT_ROOTS[n]


def test_inclusion_proofs_match_the_rfc_vectors() -> None:
    assert hexes(inclusion_proof(CT_HASHES, 0)) == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]
    assert hexes(inclusion_proof(CT_HASHES, 5)) == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]


def test_consistency_proofs_match_the_rfc_vectors() -> None:
    assert consistency_proof(CT_HASHES[:1], 1) == []
    assert hexes(consistency_proof(CT_HASHES, 1)) == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]
    assert hexes(consistency_proof(CT_HASHES, 6)) == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]
    assert hexes(consistency_proof(CT_HASHES[:5], 2)) == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_leaf_has_a_proof_that_verifies_and_wrong_inputs_fail(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(leaf) for leaf in leaves_of(n)]
    root = root_of(hashes)
    for index in range(n):
        path = inclusion_proof(hashes, index)
        assert verify_inclusion(hashes[index], index, n, path, root)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = inclusion_proof(hashes, index)
    other_leaf = leaf_hash(b"not in the tree")
    assert not verify_inclusion(other_leaf, index, n, path, root)
    if n > 1:
        wrong_index = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
        assert not verify_inclusion(hashes[index], wrong_index, n, path, root)
    assert not verify_inclusion(hashes[index], index, n, path, hashlib.sha256(root).digest())
    assert not verify_inclusion(hashes[index], n, n, path, root)  # an index outside the tree
    if path:
        tampered = list(path)
        tampered[data.draw(st.integers(min_value=0, max_value=len(path) - 1))] = other_leaf
        assert not verify_inclusion(hashes[index], index, n, tampered, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_consistency_holds_for_every_prefix_and_fails_for_a_tampered_old_root(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(leaf) for leaf in leaves_of(n)]
    new_root = root_of(hashes)
    for m in range(0, n + 1):
        old_root = root_of(hashes[:m])
        proof = consistency_proof(hashes, m)
        assert verify_consistency(m, n, old_root, new_root, proof), (m, n)
    m = data.draw(st.integers(min_value=1, max_value=n))
    proof = consistency_proof(hashes, m)
    forged_old = root_of(hashes[:m - 1] + [leaf_hash(b"rewritten history")])
    assert not verify_consistency(m, n, forged_old, new_root, proof)
    assert not verify_consistency(m, n, root_of(hashes[:m]), hashlib.sha256(new_root).digest(), proof)
    if m < n:
        assert not verify_consistency(m, n, root_of(hashes[:m]), new_root, proof[:-1])
        assert not verify_consistency(m, n, root_of(hashes[:m]), new_root, [])


def test_a_ledger_with_a_rewritten_row_is_not_consistent_with_its_past() -> None:
    """The point of it all: history that changed cannot be proven a prefix of the present."""
    hashes = [leaf_hash(leaf) for leaf in leaves_of(40)]
    old_root = root_of(hashes[:25])
    rewritten = list(hashes)
    rewritten[10] = leaf_hash(b"edited row")
    proof = consistency_proof(rewritten, 25)
    assert not verify_consistency(25, 40, old_root, root_of(rewritten), proof)


def test_frontier_round_trips_through_hex_and_refuses_a_wrong_shape() -> None:
    frontier = Frontier()
    frontier.extend(leaves_of(13))  # 13 = 8 + 4 + 1: three peaks
    assert len(frontier.to_hex()) == 3
    again = Frontier.from_hex(13, frontier.to_hex())
    again.append(b"x" * 32)
    frontier.append(b"x" * 32)
    assert again.root() == frontier.root()
    try:
        Frontier.from_hex(12, frontier.to_hex())
    except ValueError as exc:
        assert "peaks" in str(exc)
    else:
        raise AssertionError("a frontier of the wrong shape was accepted")
