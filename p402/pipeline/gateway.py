"""The request path, top to bottom:

    authenticate -> attribute -> price -> decide --deny--> record, answer
                                             \\--allow--> reserve -> forward -> settle (or release) -> record

`Gateway.handle` is the one decision point every client route goes through
(chat, streaming, embeddings, Anthropic messages): there is no other path to a
provider. Each stage is a small function; the web edge only translates HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Protocol

import orjson

from p402.core.decision import DENY_HTTP_STATUS, Ask, Decision, Plan, decide, prepare
from p402.core.ids import new_id
from p402.core.money import format_usd
from p402.core.policy import ModelSpec, Policy
from p402.errors import StoreUnavailable, UpstreamError
from p402.pipeline.auth import AttributionError, KeyRing, attribute
from p402.pipeline.ports import BudgetStore, Call, KeyRecord, Provider, Reply, Usage, aclose
from p402.pipeline.records import binding_view, decision_entry, iso, settlement_entry
from p402.pipeline.tokens import UNSEEN, chat_input_bound, embeddings_input_bound, messages_input_bound

__all__ = ["Inbound", "Refusal", "Admitted", "Gateway", "Telemetry", "Spool", "PolicySource", "settle_hold"]

_BOUNDS = {"chat": chat_input_bound, "messages": messages_input_bound, "embeddings": embeddings_input_bound}


class Telemetry(Protocol):
    def decision(self, outcome: str, deny_code: str | None, seconds: float) -> None: ...
    def settled(self, department: str, cost_nanos: int) -> None: ...


class Spool(Protocol):
    """Where decisions go while the store is down (fail closed, lose nothing)."""

    def add(self, op: str, payload: dict[str, Any]) -> None: ...


class PolicySource(Protocol):
    @property
    def current(self) -> Policy: ...


@dataclass(slots=True)
class Inbound:
    """A client request as the web edge parsed it."""

    route: str  # chat | embeddings | messages
    body: dict[str, Any]
    key: KeyRecord  # authenticated by the edge (`Gateway.authenticate`) before it read the body
    headers: Mapping[str, str]  # attribution kinds -> header values
    mandate: str | None
    started: float  # time.perf_counter() when the request arrived


@dataclass(slots=True)
class Refusal:
    """An answer without a (successful) provider call. `p402` is set on policy denials."""

    status: int
    code: str
    message: str
    param: str | None = None
    p402: dict[str, Any] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    error_type: str = "invalid_request_error"


@dataclass(slots=True)
class Admitted:
    """A provider reply to relay. For streams, iterating `chunks` settles at the end;
    the edge must `await close()` when it is done with the stream, however it ended."""

    reply: Reply
    headers: list[tuple[str, str]]
    chunks: AsyncIterator[bytes] | None = None
    close: Callable[[], Awaitable[None]] | None = None


@dataclass(slots=True)
class _Attempt:
    ask: Ask
    event_id: str
    decision: Decision
    hold_id: str
    version: int
    settled: bool = False  # a hold is settled once, however many ways its request ends



# Refusals of requests whose key could not be looked up (the store was down) come from anyone:
# at most this many a second (after a burst) are spooled for the ledger; all are counted in
# the metrics and answered 503 alike.
UNKNOWN_KEY_REFUSALS_PER_S = 10.0
UNKNOWN_KEY_REFUSALS_BURST = 50


class Allowance:
    """A token bucket: `take` says whether one more event fits `rate` a second after `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Gateway:
    """The single enforcement point."""

    def __init__(self, store: BudgetStore, providers: Mapping[str, Provider], policies: PolicySource, keys: KeyRing,
                 telemetry: Telemetry, spool: Spool, clock: Callable[[], datetime], hold_ttl_s: float) -> None:
        self.store, self.providers, self.policies, self.keys = store, providers, policies, keys
        self.telemetry, self.spool, self.clock, self.hold_ttl_s = telemetry, spool, clock, hold_ttl_s
        self._unknown_refusals = Allowance(UNKNOWN_KEY_REFUSALS_PER_S, UNKNOWN_KEY_REFUSALS_BURST)

    async def authenticate(self, secret: str | None, route: str) -> KeyRecord | Refusal:
        """The caller's key, or the refusal: 401, or 503 when the store cannot be asked (fail
        closed; the refusal is spooled for the ledger). The edge calls this before it reads a body."""
        try:
            key = await self.keys.authenticate(secret)
        except StoreUnavailable as exc:
            now, policy = self.clock(), self.policies.current
            # Whoever sent it is unknown (the key could not be looked up): such refusals are kept
            # for the ledger at a bounded rate, so junk sent during an outage cannot fill the spool.
            return self._fail_closed({"event_id": new_id("evt", now), "ts": iso(now), "kind": "decision",
                                      "tenant": policy.tenant, "route": route, "policy_version": policy.version,
                                      "reason": f"policy store unavailable while looking up the key: {exc}"}, 0.0,
                                     keep=self._unknown_refusals.take(time.monotonic()))
        return key if key is not None else _unauthorized()

    def _fail_closed(self, row: dict[str, Any], seconds: float, keep: bool = True) -> Refusal:
        """The store cannot be reached (SPEC §2.7): count it, spool the refusal's decision row for
        the ledger (fail closed, lose nothing), and answer 503."""
        self.telemetry.decision("unavailable", "POLICY_UNAVAILABLE", seconds)
        if keep:
            self.spool.add("record", {**row, "outcome": "deny", "deny_code": None, "error": "POLICY_UNAVAILABLE"})
        return _unavailable(row["event_id"])

    async def handle(self, req: Inbound) -> Refusal | Admitted:
        key = req.key
        try:
            # OpenAI's `user` (chat and embeddings) names the customer; Anthropic's request has no such field.
            who = attribute(key, req.headers, req.body.get("user") if req.route != "messages" else None)
        except AttributionError as exc:
            return Refusal(400, "invalid_attribution", exc.message, param=exc.param)
        policy = self.policies.current
        model = policy.models.get(req.body["model"])
        if model is None:
            return Refusal(404, "model_not_found", f"model {req.body['model']!r} is not configured on this gateway; "
                                                   f"GET /v1/models lists the models this key may use", param="model")
        tried: list[str] = []
        while True:
            outcome = await self._attempt(req, policy, who, model)
            if not isinstance(outcome, UpstreamError):
                return outcome
            tried.append(model.name)
            nxt = next((policy.models[f] for f in model.fallbacks if f in policy.models and f not in tried), None)
            if not outcome.retryable or nxt is None:
                status = outcome.status if outcome.status >= 500 or outcome.status == 429 else 502
                return Refusal(status, "upstream_error", f"{model.provider} failed: {outcome}",
                               error_type="api_error")
            model = nxt

    async def _attempt(self, req: Inbound, policy: Policy, who: Any, model: ModelSpec) -> Refusal | Admitted | UpstreamError:
        provider = self.providers.get(model.provider)
        if provider is None or req.route not in provider.routes:
            return Refusal(400, "unsupported_route", f"model {model.name} (provider {model.provider}) cannot serve "
                                                     f"this API format", param="model")
        t0 = time.perf_counter()  # the policy decision: price, decide, reserve and its ledger row
        now = self.clock()
        client_max = _client_max_tokens(req)
        bound = _BOUNDS[req.route](req.body, model.tokenizer, model.image_tokens)
        if bound >= UNSEEN:  # input the request only refers to: the model's context window bounds it
            if model.context_window is None:
                return Refusal(400, "invalid_request", f"messages: the request refers to input p402 cannot count "
                                                       f"(a file or document it does not see, or a server tool's "
                                                       f"results), and model {model.name} has no context_window to "
                                                       f"bound it: add context_window to the model in the config, or "
                                                       f"send the content as text", param="messages")
            bound = max(bound % UNSEEN, model.context_window)
        ask = Ask(who=who, model=model, input_tokens=bound,
                  max_tokens=client_max, wants_output=req.route != "embeddings", now=now,
                  presented_mandate=req.mandate.lower() if req.mandate else None,  # digests are stored lowercase
                  completions=int(req.body.get("n") or 1) if req.route == "chat" else 1)
        event_id = new_id("evt", now)
        prepared = prepare(ask, policy)
        try:
            if isinstance(prepared, Decision):
                decision, hold_id = prepared, None
                await self.store.record(decision_entry(event_id, now, ask, req.route, decision, policy.version))
            else:
                decision, hold_id = await self._reserve(prepared, ask, event_id, req.route, policy.version, now)
        except StoreUnavailable as exc:
            return self._fail_closed(decision_entry(event_id, now, ask, req.route, Decision(
                allowed=False, reason=f"policy store unavailable: {exc}", deny_code=None), policy.version),
                time.perf_counter() - t0)
        self.telemetry.decision("allow" if decision.allowed else "deny", decision.deny_code, time.perf_counter() - t0)
        if not decision.allowed:
            return _denial(event_id, decision, now)
        assert hold_id is not None
        attempt = _Attempt(ask, event_id, decision, hold_id, policy.version)
        return await self._forward(req, provider, attempt)

    async def _reserve(self, plan: Plan, ask: Ask, event_id: str, route: str, version: int,
                       now: datetime) -> tuple[Decision, str | None]:
        def entry(decision: Decision, hold_id: str | None) -> dict[str, Any]:
            return decision_entry(event_id, now, ask, route, decision, version, hold_id)
        return await self.store.reserve(plan, decide, entry, self.hold_ttl_s, now)

    async def _forward(self, req: Inbound, provider: Provider, a: _Attempt) -> Admitted | UpstreamError:
        try:
            # Everything between the reservation and the provider's answer sits in this
            # try, so whatever fails there releases the hold instead of leaving it to expire.
            call = _call_for(req, a)
            t_provider = time.perf_counter()
            reply = await provider.send(call)
            provider_s = time.perf_counter() - t_provider
        except UpstreamError as exc:
            await self._settle(a, None, "upstream_error", str(exc), maybe_billed=exc.maybe_billed)
            return exc
        except BaseException:
            await self._settle(a, None, "gateway_error", "interrupted before the provider answered")
            raise
        headers = self._headers(a)
        if reply.chunks is None:
            cost = await self._settle(a, reply, "ok" if reply.status < 400 else f"upstream_{reply.status}")
            headers.append(("X-P402-Cost-Usd", format_usd(cost)))
            overhead = time.perf_counter() - req.started - provider_s
            headers.append(("X-P402-Overhead-Ms", f"{overhead * 1000:.3f}"))
            return Admitted(reply, headers)
        # A stream's overhead is everything before the provider was called (its end is the provider's).
        headers.append(("X-P402-Overhead-Ms", f"{(t_provider - req.started) * 1000:.3f}"))
        relay = self._relay(a, reply, req.route)

        async def close() -> None:
            await relay.aclose()  # a relay that started settles in its own `finally`
            # One that never started (the client left before the first chunk): stop the
            # upstream call and settle it here. Both are no-ops once done.
            await aclose(reply.chunks)
            await self._settle(a, reply, "client_disconnected", "the client went away before the stream began")
        return Admitted(reply, headers, relay, close)

    async def _relay(self, a: _Attempt, reply: Reply, route: str) -> AsyncGenerator[bytes, None]:
        """Relay a stream; whatever ends it (done, upstream failure, client gone), settle once.

        The last chunk is held back until the settlement is written, so a client
        that has seen the end of its stream also sees its cost in the ledger and
        in every spend report (one chunk of lag, no per-chunk work).
        """
        assert reply.chunks is not None
        status, error = "client_disconnected", "the client went away mid-stream"  # unless it ends otherwise
        held: bytes | None = None
        try:
            async for chunk in reply.chunks:
                if held is not None:
                    yield held
                held = chunk
            await self._settle(a, reply, "ok")
        except UpstreamError as exc:
            await self._settle(a, reply, "upstream_error", str(exc))
            if held is not None:
                yield held
                held = None
            yield _stream_error(route, str(exc))
        finally:
            await aclose(reply.chunks)
            await self._settle(a, reply, status, error)  # a no-op if settled above
        if held is not None:
            yield held

    async def _settle(self, a: _Attempt, reply: Reply | None, status: str, error: str | None = None,
                      maybe_billed: bool = False) -> int:
        """Settle the attempt's hold at the reply's cost, once; returns the cost (0 if already settled).

        The cost is the provider's usage report when it came. Without one, a call the provider
        may have served (a reply that was not an error, or a failure after the request was sent:
        `maybe_billed`) is settled at its reserved estimate and flagged `unmetered`: what was
        streamed is a floor, not a bound (hidden reasoning and thinking tokens are billed too)."""
        if a.settled:
            return 0
        a.settled = True
        usage = reply.usage if reply is not None else None
        cost = 0
        if usage is not None:
            price = a.ask.model.price_for(usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens)
            assert price is not None  # only priced models are admitted
            cost = price.cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
        unmetered = (not (usage is not None and usage.reported)
                     and (maybe_billed or (reply is not None and reply.status < 400)))
        if unmetered:
            cost = max(cost, a.decision.estimate_nanos)
        entry = settlement_entry(a.event_id, self.clock(), a.ask, a.hold_id, a.decision.estimate_nanos, cost,
                                 usage or Usage(), status, a.version, error, unmetered=unmetered)
        try:
            await settle_hold(self.store, a.hold_id, cost, entry)
        except StoreUnavailable:
            # The hold stays reserved in the store (still counted against the
            # caps: safe), and the settlement is replayed when the store returns.
            self.spool.add("settle", {"hold_id": a.hold_id, "cost_nanos": cost, "entry": entry})
        self.telemetry.settled(a.ask.who.department, cost)
        return cost

    def _headers(self, a: _Attempt) -> list[tuple[str, str]]:
        d = a.decision
        headers = [("X-P402-Event-Id", a.event_id), ("X-P402-Estimate-Usd", format_usd(d.estimate_nanos))]
        remaining = d.remaining_nanos
        if remaining is not None:
            headers.append(("X-P402-Budget-Remaining-Usd", format_usd(max(remaining, 0))))
        if d.max_tokens_set and d.max_tokens is not None:
            headers.append(("X-P402-Max-Tokens", str(d.max_tokens)))
        return headers


def _unauthorized() -> Refusal:
    return Refusal(401, "invalid_api_key", "missing, unknown or revoked API key", error_type="authentication_error")


def _unavailable(event_id: str) -> Refusal:
    """The fail-closed answer when the store cannot be reached (SPEC §2.7)."""
    return Refusal(503, "POLICY_UNAVAILABLE", "the budget store cannot be reached; the request was refused "
                                              "(p402 fails closed)", error_type="p402_unavailable",
                   headers=[("X-P402-Event-Id", event_id), ("Retry-After", "5")])


async def settle_hold(store: BudgetStore, hold_id: str, cost_nanos: int, entry: dict[str, Any]) -> None:
    """Settle a hold; if its lease ran out first (it was settled as orphaned at its
    reserved amount), record what the call really cost beside it as `late_settle`."""
    if not await store.settle(hold_id, cost_nanos, entry):
        await store.record({**entry, "kind": "late_settle"})


def _call_for(req: Inbound, a: _Attempt) -> Call:
    """The upstream call: the client's body with the upstream model and the decided output bound."""
    body = dict(req.body)
    body["model"] = a.ask.model.upstream
    if a.ask.wants_output:
        # The upstream body carries exactly one output bound, the one the estimate was made for:
        # a second field (or a null one) would let a provider or a translator pick another.
        sent = next((f for f in _BOUND_FIELDS[req.route] if body.get(f) is not None), None)
        for f in _BOUND_FIELDS[req.route] + ("max_completion_tokens",):
            body.pop(f, None)
        if sent is None:
            sent = "max_completion_tokens" if (req.route == "chat" and a.ask.model.provider == "openai") else "max_tokens"
        body[sent] = a.decision.max_tokens
    options = body.get("stream_options")
    wants_usage = req.route == "chat" and isinstance(options, dict) and bool(options.get("include_usage"))
    return Call(route=req.route, body=body, stream=bool(body.get("stream")), upstream_model=a.ask.model.upstream,
                client_wants_usage=wants_usage, input_tokens_bound=a.ask.input_tokens)


# The fields that bound a route's output, in the order a provider reads them: OpenAI's chat takes
# `max_completion_tokens` over the older `max_tokens`; Anthropic's messages know only `max_tokens`.
_BOUND_FIELDS = {"chat": ("max_completion_tokens", "max_tokens"), "messages": ("max_tokens",)}


def _client_max_tokens(req: Inbound) -> int | None:
    """The client's output bound (a null field is no bound: the gateway then sets one)."""
    if req.route == "embeddings":
        return None
    value = next((req.body[f] for f in _BOUND_FIELDS[req.route] if req.body.get(f) is not None), None)
    return int(value) if value is not None else None


def _denial(event_id: str, d: Decision, now: datetime) -> Refusal:
    assert d.deny_code is not None
    recovery = d.recovery.as_dict() if d.recovery else None
    p402 = {"deny_code": d.deny_code, "event_id": event_id, "scope": d.scope,
            "budget": binding_view(d.binding), "estimate_usd": format_usd(d.estimate_nanos, 4) if d.estimate_nanos else None,
            "recovery": recovery}
    headers = [("X-P402-Deny-Code", d.deny_code), ("X-P402-Event-Id", event_id)]
    if d.recovery is not None and d.recovery.retry_after_s is not None and d.recovery.action == "wait_for_reset":
        headers.append(("Retry-After", str(d.recovery.retry_after_s)))
    return Refusal(DENY_HTTP_STATUS[d.deny_code], d.deny_code, d.reason, p402=p402, headers=headers,
                   error_type="p402_denied")


def _stream_error(route: str, message: str) -> bytes:
    """The in-band error event each SDK raises on when a stream fails after it started."""
    if route == "messages":
        return b"event: error\ndata: " + orjson.dumps(
            {"type": "error", "error": {"type": "api_error", "message": message}}) + b"\n\n"
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "api_error", "code": "upstream_error"}}) + b"\n\n"
