"""Streaming ledger exports (jsonl, csv; FOCUS lives in `focus.py`) and offline export verification.

Every exporter is a generator of encoded lines over `ChainRow`s, so the CLI can
write a file and the admin API can stream a response from the same code, with
flat memory for any number of rows.

The jsonl file is self-contained evidence:

    {"type":"p402-ledger-export","version":1,"public_key":..,"key_id":..,"created":..,"rows":..,"sealed":{checkpoint}}
    {"type":"event","seq":1,"prev_hash":"000..","hash":"..","body":"<the stored body, byte for byte>"}
    ...
    {"type":"end","rows":N,"last_seq":N,"last_hash":"..","created":..[,"key_id":..,"signature":..]}

`body` is the stored JSON text carried as a string, so the hashes re-verify
exactly. `sealed` is the newest checkpoint when the export began: a file cut
short before that checkpoint is "truncated inside the sealed range". The end line
catches truncation after it; signed (when the exporter holds the key) it also
proves the unsealed tail was complete when exported.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import orjson

from p402.core.ledger import GENESIS_HASH, ChainRow, canonical
from p402.prove.audit import AuditReport, Auditor, Fault, trusted_keys
from p402.prove.calls import PROGRESS_EVERY, Progress, calls
from p402.prove.rows import iso
from p402.prove.signing import PublicKeyLike, Signer, key_id_of, load_public_key, public_hex, verify_signature

__all__ = ["EXPORT_TYPE", "EXPORT_VERSION", "CSV_COLUMNS", "jsonl_lines", "csv_lines", "write_lines",
           "read_jsonl", "export_rows", "verify_export", "end_statement", "BadExportLine"]

EXPORT_TYPE = "p402-ledger-export"
EXPORT_VERSION = 1
_END_TAG = b"p402-export-end/v1\n"
CSV_COLUMNS = ("seq", "ts", "event_id", "kind", "outcome", "deny_code", "tenant", "department", "employee", "key",
               "customer", "project", "feature", "workflow", "model", "provider", "estimate_usd", "cost_usd",
               "input_tokens", "output_tokens", "max_tokens", "policy_version", "ref", "flags", "recovery_action",
               "reason")


def end_statement(rows: int, last_seq: int, last_hash: str, created: str) -> bytes:
    """The bytes an export's end-line signature covers."""
    return _END_TAG + canonical({"created": created, "last_hash": last_hash, "last_seq": last_seq, "rows": rows})


def jsonl_lines(rows: Iterable[ChainRow], *, public_key: PublicKeyLike | None = None,
                sealed: Mapping[str, Any] | None = None, signer: Signer | None = None,
                progress: Progress | None = None, total: int | None = None,
                now: datetime | None = None) -> Iterator[bytes]:
    """The jsonl export, line by line (each ends in a newline).

    `sealed` is the newest checkpoint body (`checkpoints.latest_checkpoint(store)`),
    read *before* `rows` is iterated. With `signer`, the end line is signed and the
    header's key defaults to the signer's.
    """
    key = load_public_key(public_key) if public_key is not None else (signer.public_key if signer else None)
    created = iso(now or datetime.now(timezone.utc))
    yield orjson.dumps({"type": EXPORT_TYPE, "version": EXPORT_VERSION,
                        "public_key": public_hex(key) if key else None, "key_id": key_id_of(key) if key else None,
                        "created": created, "rows": total, "sealed": dict(sealed) if sealed else None}) + b"\n"
    count, last_seq, last_hash = 0, 0, GENESIS_HASH  # an empty ledger ends where the chain starts
    for row in rows:
        yield orjson.dumps({"type": "event", "seq": row.seq, "prev_hash": row.prev_hash, "hash": row.hash,
                            "body": row.body.decode()}) + b"\n"
        count, last_seq, last_hash = count + 1, row.seq, row.hash
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count, total)
    end: dict[str, Any] = {"type": "end", "rows": count, "last_seq": last_seq, "last_hash": last_hash,
                           "created": created}
    if signer is not None:
        end["key_id"] = signer.key_id
        end["signature"] = signer.sign(end_statement(count, last_seq, last_hash, created)).hex()
    yield orjson.dumps(end) + b"\n"
    if progress is not None:
        progress(count, total)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    text = str(value)
    # A spreadsheet runs a cell that starts with = + @ as a formula; model names
    # and reasons can carry client-chosen text, so such cells are quoted with '.
    if text[:1] in ("=", "+", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_encoded(header: Iterable[str], records: Iterable[Iterable[str]]) -> Iterator[bytes]:
    """CSV lines as bytes, one at a time (flat memory however many records)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in itertools.chain([header], records):
        writer.writerow(record)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def csv_lines(rows: Iterable[ChainRow], *, progress: Progress | None = None,
              total: int | None = None) -> Iterator[bytes]:
    """One CSV line per decision and settlement, settlements carrying their decision's attribution."""
    def records() -> Iterator[list[str]]:
        for call in calls(rows, progress=progress, total=total):
            recovery = call.body.get("recovery")
            values = {name: call.get(name) for name in CSV_COLUMNS}
            values["seq"] = call.seq
            values["recovery_action"] = recovery.get("action") if isinstance(recovery, dict) else None
            for own in ("ts", "event_id", "kind", "outcome", "deny_code", "cost_usd", "output_tokens", "ref",
                        "flags", "reason"):
                values[own] = call.body.get(own)  # never inherited from the decision
            yield [_csv_cell(values[name]) for name in CSV_COLUMNS]
    return csv_encoded(CSV_COLUMNS, records())


def write_lines(lines: Iterable[bytes], path: str | Path) -> None:
    """Write an export to `path` atomically (a `.part` file renamed into place when complete)."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        for line in lines:
            f.write(line)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


class BadExportLine(ValueError):
    """A line of a jsonl export that is not what an export holds; the message names it, `line` is its number.

    A ValueError, so verification reports it as the file's fault; its own class, so a
    command can tell the file's fault from a bug of its own.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, parsed object) for each line of an export; a bad line raises BadExportLine naming it."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise BadExportLine(number, f"line {number} is not valid JSON (file damaged or cut mid-line)") \
                    from None
            if not isinstance(item, dict):
                raise BadExportLine(number, f"line {number} is not a JSON object")
            yield number, item


def export_rows(path: str | Path) -> Iterator[ChainRow]:
    """The ledger rows of a jsonl export, in file order (for `verify_rows`, `simulate_rows`, csv/focus)."""
    for number, item in read_jsonl(path):
        if item.get("type") == "event":
            yield _row_of(item, number)


def _row_of(item: Mapping[str, Any], number: int) -> ChainRow:
    seq, body, prev, digest = item.get("seq"), item.get("body"), item.get("prev_hash"), item.get("hash")
    if not isinstance(seq, int) or not isinstance(body, str) or not isinstance(prev, str) \
            or not isinstance(digest, str):
        raise BadExportLine(number, f"line {number}: an event needs seq, prev_hash, hash and body")
    return ChainRow(seq, body.encode(), prev, digest)


def verify_export(path: str | Path, public_key: PublicKeyLike | Iterable[PublicKeyLike] | None = None,
                  anchor: Mapping[str, Any] | None = None, progress: Progress | None = None) -> AuditReport:
    """Check an export with no store and no network.

    `public_key` is the key you trust (from the gateway operator); without it the
    key in the file's header is used and the report says so. `anchor` is a
    checkpoint body you obtained separately (GET /admin/v1/ledger/checkpoint): the
    file must contain it, which catches a file cut back to an older state.
    """
    lines = read_jsonl(path)
    try:
        _, header = next(lines)
    except (StopIteration, ValueError):
        header = {}
    if header.get("type") != EXPORT_TYPE or header.get("version") != EXPORT_VERSION:
        report = AuditReport()
        report.fault = Fault(0, None, f"not a p402 ledger export (version {EXPORT_VERSION})")
        return report
    keys, notes = _keys_for(header, public_key)
    auditor = Auditor(keys)
    auditor.report.notes.extend(notes)
    expected = [c for c in (header.get("sealed"), anchor) if isinstance(c, Mapping) and isinstance(c.get("seq"), int)]
    end: dict[str, Any] | None = None
    try:
        for number, item in lines:
            if end is not None:
                raise BadExportLine(number, f"line {number}: data after the end line (rows appended to the file)")
            if item.get("type") == "end":
                end = item
                continue
            row = _row_of(item, number)
            if not auditor.feed(row):
                return auditor.finish()
            for claim in expected:
                if claim["seq"] == row.seq and not _same_checkpoint(claim, row):
                    auditor.report.fault = Fault(row.seq, None, "this is not the checkpoint the header or anchor "
                                                 f"names ({claim.get('event_id')}): checkpoint swapped")
                    return auditor.finish()
            if progress is not None and auditor.report.rows % PROGRESS_EVERY == 0:
                progress(auditor.report.rows, header.get("rows"))
    except ValueError as exc:
        auditor.report.fault = Fault(auditor.report.last_seq + 1, None, str(exc))
        return auditor.finish()
    report = auditor.finish()
    report.fault = _ending_fault(report, end, expected, keys)
    if progress is not None:
        progress(report.rows, header.get("rows"))
    return report


def _keys_for(header: Mapping[str, Any], public_key: Any) -> tuple[Any, list[str]]:
    if public_key is not None:
        keys = trusted_keys(public_key)
        if header.get("key_id") and keys is not None and header["key_id"] not in keys:
            return keys, [f"the file's header names key {header['key_id']}, not the key you gave"]
        return keys, []
    if isinstance(header.get("public_key"), str):
        keys = trusted_keys(header["public_key"])
        return keys, [f"signatures were checked with the key in the file itself ({header.get('key_id')}); "
                      "compare it with the gateway's published key"]
    return None, []


def _same_checkpoint(claim: Mapping[str, Any], row: ChainRow) -> bool:
    body = orjson.loads(row.body)
    return all(body.get(k) == claim.get(k) for k in ("event_id", "root", "tree_size", "signature"))


def _ending_fault(report: AuditReport, end: Mapping[str, Any] | None, expected: list[Mapping[str, Any]],
                  keys: Any) -> Fault | None:
    if report.fault is not None:
        return report.fault
    last = report.last_seq
    for claim in expected:
        if last < claim["seq"]:
            return Fault(last, None, f"the file ends at row {last}, before checkpoint {claim.get('event_id')} "
                         f"(row {claim['seq']}) that sealed rows 1..{claim.get('tree_size')}: "
                         "truncated inside the sealed range")
    if end is None:
        return Fault(last, None, f"the file ends at row {last} without its end line: truncated; rows after "
                     f"row {report.sealed_through} are unsealed, so how many are missing cannot be proven")
    if (end.get("rows"), end.get("last_seq"), end.get("last_hash")) != (report.rows, last, report.last_hash):
        return Fault(last, None, f"the end line says {end.get('rows')} rows ending at row {end.get('last_seq')}, "
                     f"but the file holds {report.rows} ending at row {last}: rows removed or added")
    if "signature" in end and keys is not None:
        key = keys.get(end.get("key_id"))
        message = end_statement(report.rows, last, report.last_hash, str(end.get("created")))
        try:
            signature = bytes.fromhex(str(end["signature"]))
        except ValueError:
            signature = b""
        if key is None or not verify_signature(key, signature, message):
            return Fault(last, None, "the end line's signature does not verify (the file's tail was altered)")
        if report.unsealed_rows:
            report.notes[:] = [n for n in report.notes if "not yet covered" not in n]
            report.notes.append(f"rows {report.sealed_through + 1}..{last} are covered by the export's signed "
                                "end line, not yet by a checkpoint")
    return None
