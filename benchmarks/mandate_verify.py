"""How long does verifying a mandate take? (A measurement, not a test.)

Verification happens once per submitted document (and once per document when
the book is rebuilt at start), never per request; this shows what a submission
or a start with many mandates costs, and that building a policy from the book
(the part that runs on every policy change) does no cryptography.

    python -m benchmarks.mandate_verify [--n 2000]      (from the repository root)
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timezone

from p402.core.policy import Budget
from p402.core.scopes import Scope
from p402.mandates import book as book_module
from p402.mandates.book import MandateBook
from p402.mandates.documents import verify_document
from p402.mandates.identity import new_identity
from p402.mandates.signing import sign_mandate


def _per_call_us(fn: object, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="documents to verify (default 2000)")
    n = parser.parse_args().n
    key, owner, _ = new_identity("bench-owner")
    now = datetime(2026, 3, 15, tzinfo=timezone.utc)
    budgets = {f"b{i}": Budget(f"b{i}", Scope("project", f"p{i}"), 10**12, "month", requires_mandate=True,
                               owner=owner) for i in range(n)}
    docs = [sign_mandate({"budget": f"b{i}", "scope": f"project:p{i}", "cap_usd": "1000", "period": "month",
                          "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-12-31T23:59:59Z"}, key, now=now)
            for i in range(n)]

    median, p99 = _per_call_us(lambda: verify_document(docs[0]), n)
    print(f"verify_document (shape, JCS content hash, EIP-712 digest, low-s check, ecrecover): "
          f"median {median:.0f} us, p99 {p99:.0f} us")

    book = MandateBook()
    start = time.perf_counter()
    for doc in docs:
        book.submit(doc, budgets, now)
    print(f"MandateBook.submit of {n} mandates: {(time.perf_counter() - start) * 1e6 / n:.0f} us each")

    book_module._VERIFIED.clear()  # a cold start: nothing verified in this process yet
    start = time.perf_counter()
    problems = MandateBook().load(docs)
    print(f"MandateBook.load (rebuild at start) of {n} mandates: {(time.perf_counter() - start) * 1e3:.1f} ms "
          f"({len(problems)} skipped)")

    start = time.perf_counter()
    MandateBook().load(docs)
    print(f"rebuild after a policy change, same {n} documents (memoised, not re-verified): {(time.perf_counter() - start) * 1e3:.1f} ms")

    start = time.perf_counter()
    states = book.mandate_states(budgets)
    book.effective_budgets(budgets)
    book.overrides(budgets, now)
    print(f"policy parts for {len(states)} budgets (no cryptography): {(time.perf_counter() - start) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
