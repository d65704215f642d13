"""Admin routes that change policy: budgets, keys, signed mandates, revocations and overrides.

Every change is a `policy` ledger row with the actor and the object's before and
after, written in the same transaction as the change, and the gateway's policy
snapshot is refreshed at once.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from p402.config import parse_budget
from p402.core.ids import new_id
from p402.core.money import format_usd
from p402.core.periods import window_for
from p402.core.policy import Budget
from p402.errors import NotFound
from p402.mandates.errors import MandateRejected
from p402.ops.apply import KeyRefused, create_key
from p402.ops.mandates import REJECTION_STATUS, submit_document
from p402.ops.policy_cache import budget_to_dict
from p402.pipeline.records import policy_entry
from p402.web.admin_http import ApiError, body_of, json_response

__all__ = ["PolicyRoutes"]



def _loosened(before: Budget, after: Budget) -> str | None:
    """The first field whose change could let more be spent (None when the change only tightens)."""
    if after.cap_nanos > before.cap_nanos:
        return "cap_usd"
    if before.requires_mandate and not after.requires_mandate:
        return "requires_mandate"
    if before.mode == "enforce" and after.mode != "enforce":
        return "mode"
    for name in ("scope", "period", "per", "categories", "owner"):
        if getattr(after, name) != getattr(before, name):
            return name
    return None


def _owner_only(ident: str, owner: str, why: str, param: str | None) -> ApiError:
    """SPEC §6: nobody but a budget's owner can raise it; the admin API may only tighten an owned budget."""
    return ApiError(403, f"budget {ident} belongs to {owner}: {why}, which only its owner can do. The owner signs "
                         f"an override (POST /admin/v1/overrides) or a new mandate; the config file "
                         f"(p402 apply) remains the operator's way to reshape it", "owner_only", param)

class PolicyRoutes:
    """Handlers `(request, role) -> JSON` for the policy half of the admin API."""

    def __init__(self, runtime: Any) -> None:
        self.runtime, self.store, self.tenant = runtime, runtime.store, runtime.config.tenant

    async def change(self, kind: str, ident: str, body: dict[str, Any] | None, before: Any, action: str, role: str) -> None:
        now = self.runtime.clock()
        entry = policy_entry(new_id("evt", now), now, self.tenant, action, kind, ident, f"admin:{role}", before, body)
        await self.store.change_objects([(kind, ident, body)], [entry])
        await self.runtime.refresh_policy()

    async def budget_status(self, b: dict[str, Any]) -> dict[str, Any]:
        budget = parse_budget(b, f"budget {b['id']}")
        if budget.period == "request":
            return {**b, "window": None}
        window = window_for(budget.period, self.runtime.clock(), self.runtime.policies.current.timezone)
        rows = await self.store.counters_of(budget.id, window.key)
        settled, reserved = sum(r[1] for r in rows), sum(r[2] for r in rows)
        cap = self.runtime.policies.current.cap_of(budget, self.runtime.clock())
        out = {**b, "window": {"start": window.start.isoformat(), "end": window.end.isoformat() if window.end else None},
               "settled_usd": format_usd(settled, 4), "reserved_usd": format_usd(reserved, 4),
               "effective_cap_usd": format_usd(cap)}
        if not budget.per:
            out["remaining_usd"] = format_usd(max(cap - settled - reserved, 0), 4)
        return out

    async def list_budgets(self, request: Request, role: str) -> Any:
        budgets = await self.store.objects("budget")
        return {"data": [await self.budget_status(b) for b in budgets.values()]}

    async def create_budget(self, request: Request, role: str) -> Any:
        data = await body_of(request)
        budget = parse_budget(data, "body")
        if budget.id in await self.store.objects("budget"):
            raise ApiError(409, f"budget {budget.id} exists; PATCH /admin/v1/budgets/{budget.id} changes it", "conflict", "id")
        body = budget_to_dict(budget)
        await self.change("budget", budget.id, body, None, "create", role)
        return json_response(await self.budget_status(body), 201)

    async def _named_budget(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The budget the path names, or 404."""
        ident = request.path_params["id"]
        b = (await self.store.objects("budget")).get(ident)
        if b is None:
            raise NotFound(f"budget {ident} does not exist")
        return ident, b

    async def get_budget(self, request: Request, role: str) -> Any:
        return await self.budget_status((await self._named_budget(request))[1])

    async def patch_budget(self, request: Request, role: str) -> Any:
        ident, before = await self._named_budget(request)
        data = await body_of(request)
        if "id" in data and data["id"] != ident:
            raise ApiError(400, "id: a budget's id cannot change", "invalid_request", "id")
        after = budget_to_dict(parse_budget({**before, **data}, "body"))
        if after != before:
            old, new = await self._parsed(before), await self._parsed(after)
            loosened = _loosened(old, new)
            if old.owner and loosened is not None:
                raise _owner_only(ident, old.owner, f"{loosened}: this change would raise or loosen it", loosened)
            await self.change("budget", ident, after, before, "update", role)
        return await self.budget_status(after)

    async def delete_budget(self, request: Request, role: str) -> Any:
        ident, before = await self._named_budget(request)
        owner = (await self._parsed(before)).owner
        if owner:
            raise _owner_only(ident, owner, "deleting it would lift its cap", None)
        await self.change("budget", ident, None, before, "delete", role)
        return {"id": ident, "deleted": True}

    async def _parsed(self, body: dict[str, Any]) -> Budget:
        """A stored budget as the policy reads it: a department budget without an owner of its
        own belongs to the department's owner."""
        owners = {f"department:{d}": str(v.get("owner") or "") for d, v in (await self.store.objects("department")).items()}
        return parse_budget(body, "body", owners=owners)

    async def list_keys(self, request: Request, role: str) -> Any:
        return {"data": [{"id": k.id, "owner": f"{k.owner_kind}:{k.owner_id}", "department": k.department or None,
                          "employee": k.employee or None, "workflow": k.workflow or None, "revoked": k.revoked,
                          "created_at": k.created_at} for k in await self.store.list_keys()]}

    async def create_key(self, request: Request, role: str) -> Any:
        data = await body_of(request)
        unknown = sorted(set(data) - {"id", "employee", "department", "workflow"})
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown field; a key takes id and one of employee, department, "
                                f"workflow", "invalid_request", unknown[0])
        owners = [o for o in ("employee", "department", "workflow") if o in data]
        if len(owners) != 1:
            raise ApiError(400, "name exactly one owner: employee, department or workflow", "invalid_request", "employee")
        kind = owners[0]
        try:
            record, secret = await create_key(self.store, self.tenant, kind, data[kind], data.get("id"),
                                              self.runtime.clock(), f"admin:{role}")
        except KeyRefused as exc:
            raise ApiError(409 if exc.conflict else 400, f"{exc.field}: {exc.message}",
                           "conflict" if exc.conflict else "invalid_request", exc.field) from None
        ident, owner = record.id, record.owner_id
        await self.runtime.refresh_policy()
        return json_response({"id": ident, "secret": secret, "owner": f"{kind}:{owner}",
                              "department": record.department or None, "employee": record.employee or None,
                              "workflow": record.workflow or None,
                              "note": "the secret is shown once; p402 keeps only its hash"}, 201)

    async def revoke_key(self, request: Request, role: str) -> Any:
        ident = request.path_params["id"]
        now = self.runtime.clock()
        # before/after say what changed, as every policy row does (the key itself is not deleted).
        entry = policy_entry(new_id("evt", now), now, self.tenant, "revoke", "key", ident, f"admin:{role}",
                             {"revoked": False}, {"revoked": True})
        await self.store.revoke_key(ident, entry)
        self.runtime.keys.invalidate()
        await self.runtime.refresh_policy()
        return {"id": ident, "revoked": True}

    async def take(self, request: Request, role: str, kind: str, document: dict[str, Any] | None = None) -> Any:
        if document is None:
            document = await body_of(request)
        try:
            accepted = await submit_document(self.store, self.runtime.policies.current, document, kind, f"admin:{role}",
                                             self.runtime.clock())
        except MandateRejected as e:
            raise ApiError(REJECTION_STATUS.get(e.code, 400), str(e), e.code, e.field) from None
        await self.runtime.refresh_policy()
        return json_response({**accepted.summary, "new": accepted.new}, 201 if accepted.new else 200)

    async def post_mandate(self, request: Request, role: str) -> Any:
        return await self.take(request, role, "mandate")

    async def post_override(self, request: Request, role: str) -> Any:
        return await self.take(request, role, "override")

    async def revoke_mandate(self, request: Request, role: str) -> Any:
        digest = request.path_params["digest"].lower()
        document = await body_of(request)
        proof = document.get("proof")
        message = proof.get("message") if isinstance(proof, dict) else None
        named = message.get("mandate") if isinstance(message, dict) else None
        if not isinstance(named, str) or named.lower() != digest:
            raise ApiError(400, f"proof.message.mandate must name the mandate in the path ({digest})",
                           "invalid_request", "proof.message.mandate")
        return await self.take(request, role, "revocation", document)
