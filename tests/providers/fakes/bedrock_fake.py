"""A fake Bedrock runtime: `POST /model/{modelId}/converse` and `/converse-stream`, SigV4 checked.

Wire format as in the Bedrock API reference: Converse responses (`output.message`,
`stopReason`, `usage` with inputTokens, outputTokens, totalTokens,
cacheReadInputTokens, cacheWriteInputTokens, `metrics`); ConverseStream as the
binary `application/vnd.amazon.eventstream` framing with real CRC32s: events
messageStart, contentBlockStart, contentBlockDelta, contentBlockStop,
messageStop, metadata (each payload padded with a `p` field, as AWS does), and
`exception` messages; errors as `{"message"}` with `x-amzn-ErrorType`.

Every request's SigV4 signature is recomputed here with botocore from what was
received (method, raw path, signed headers, body) and the fake's copy of the
secret; a mismatch answers 403 InvalidSignatureException, as AWS does.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.providers.fakes.base import FakeServer, split_words
from tests.providers.fakes.eventstream_encode import event, exception

__all__ = ["BedrockFake"]

_ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}


class BedrockFake(FakeServer):
    def __init__(self, access_key: str = "AKIDFAKEEXAMPLE", secret_key: str = "fake-secret-key",
                 token: str | None = "fake-session-token", region: str = "us-east-1") -> None:
        super().__init__()
        self.access_key, self.secret_key, self.token, self.region = access_key, secret_key, token, region
        self.reply_text = "Budgets are decided before the call, not after it."
        self.reasoning_text = ""
        self.tool_uses: list[dict[str, Any]] = []  # [{"toolUseId", "name", "input"}]
        self.input_tokens = 40
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.send_metadata = True
        self.signature_failures = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/model/{model}/converse", self.converse),
                web.post("/model/{model}/converse-stream", self.converse_stream)]

    def error_response(self, status: int, message: str) -> web.Response:
        kind = _ERROR_TYPES.get(status, "InternalServerException")
        return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                            headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                                     "x-amzn-RequestId": "req-fake"})

    # -- SigV4, recomputed from the request as received ------------------------------------------------------

    def signature_problem(self, request: web.Request, body: bytes) -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "Missing Authentication Token"
        fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        key, _date, region, service, _ = fields["Credential"].split("/")
        if (key, region, service) != (self.access_key, self.region, "bedrock"):
            return f"credential scope {key}/{region}/{service} is not ours"
        if self.token is not None and request.headers.get("X-Amz-Security-Token") != self.token:
            return "The security token included in the request is invalid."
        signed = fields["SignedHeaders"].split(";")
        headers = {name: request.headers[name] for name in signed}
        rebuilt = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=body,
                             headers=headers)
        rebuilt.context["timestamp"] = request.headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key, self.token), "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt)
        if not hmac.compare_digest(expected, fields["Signature"]):
            return "The request signature we calculated does not match the signature you provided."
        return None

    async def _admit(self, request: web.Request) -> tuple[web.StreamResponse | None, dict[str, Any]]:
        rec = await self.record(request)
        early = await self.before_answer(request)
        if early is not None:
            return early, {}
        problem = self.signature_problem(request, rec.raw)
        if problem is not None:
            self.signature_failures += 1
            resp = self.error_response(403, problem)
            resp.headers["x-amzn-ErrorType"] = "InvalidSignatureException"
            return resp, {}
        body = rec.json or {}
        if not body.get("messages"):
            return self.error_response(400, "A conversation must start with a user message."), {}
        return None, body

    # -- answers ----------------------------------------------------------------------------------------------

    def output_tokens(self) -> int:
        return (len(split_words(self.reply_text)) if self.reply_text else 0) + \
            (len(split_words(self.reasoning_text)) if self.reasoning_text else 0) + 5 * len(self.tool_uses)

    def usage(self) -> dict[str, int]:
        out = self.output_tokens()
        return {"inputTokens": self.input_tokens, "outputTokens": out,
                "totalTokens": self.input_tokens + out + self.cache_read_tokens + self.cache_write_tokens,
                "cacheReadInputTokens": self.cache_read_tokens, "cacheWriteInputTokens": self.cache_write_tokens}

    def stop_reason(self) -> str:
        return "tool_use" if self.tool_uses else "end_turn"

    async def converse(self, request: web.Request) -> web.StreamResponse:
        early, _ = await self._admit(request)
        if early is not None:
            return early
        content: list[dict[str, Any]] = []
        if self.reasoning_text:
            content.append({"reasoningContent": {"reasoningText": {"text": self.reasoning_text, "signature": "s"}}})
        if self.reply_text:
            content.append({"text": self.reply_text})
        content += [{"toolUse": t} for t in self.tool_uses]
        doc = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": self.stop_reason(),
               "usage": self.usage(), "metrics": {"latencyMs": 321}}
        self.sent_text = self.reply_text
        return web.Response(body=orjson.dumps(doc), content_type="application/json",
                            headers={"x-amzn-RequestId": "req-fake"})

    @staticmethod
    def _event(kind: str, doc: dict[str, Any]) -> bytes:
        return event(kind, orjson.dumps({**doc, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}))

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        early, _ = await self._admit(request)
        if early is not None:
            return early
        ev = self._event
        head = [ev("messageStart", {"role": "assistant"})]
        content: list[tuple[bytes, str]] = []
        index = 0
        if self.reasoning_text:
            content += [(ev("contentBlockDelta", {"contentBlockIndex": index,
                                                  "delta": {"reasoningContent": {"text": w}}}), w)
                        for w in split_words(self.reasoning_text)]
            content.append((ev("contentBlockStop", {"contentBlockIndex": index}), ""))
            index += 1
        if self.reply_text:
            content += [(ev("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": w}}), w)
                        for w in split_words(self.reply_text)]
            content.append((ev("contentBlockStop", {"contentBlockIndex": index}), ""))
            index += 1
        for t in self.tool_uses:
            args = orjson.dumps(t["input"]).decode()
            content += [(ev("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {
                "toolUseId": t["toolUseId"], "name": t["name"]}}}), t["name"]),
                (ev("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": args}}}), args),
                (ev("contentBlockStop", {"contentBlockIndex": index}), "")]
            index += 1
        tail = [ev("messageStop", {"stopReason": self.stop_reason()})]
        if self.send_metadata:
            tail.append(ev("metadata", {"usage": self.usage(), "metrics": {"latencyMs": 321}}))

        def more(i: int) -> tuple[bytes, str]:
            return ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " more"}}), " more"

        corrupt = bytearray(ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
        corrupt[-6] ^= 0xFF  # flip payload bits: the message CRC no longer matches
        return await self.write_stream(
            request, head, content, tail, content_type="application/vnd.amazon.eventstream", more=more,
            garbage=bytes(corrupt),
            error_frame=lambda: exception("modelStreamErrorException", "The model stream failed."))
