"""The Amazon Bedrock adapter: Converse and ConverseStream, signed with SigV4.

`POST /model/{modelId}/converse` and `/converse-stream` on the runtime endpoint
(`base_url`, default `https://bedrock-runtime.{region}.amazonaws.com`). Requests
are signed with botocore's `SigV4Auth` (service `bedrock`) using credentials
from the standard AWS chain (environment, shared files, SSO, container and
instance roles), resolved once off the event loop; a Bedrock API key
(`api_key`) is sent as a bearer token instead. The stream is AWS's binary event
stream (see `eventstream`), translated to chat chunks by `chat_over_converse`;
usage comes in its final `metadata` event.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Mapping
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from p402.errors import UpstreamError
from p402.pipeline.ports import Call, Reply, Usage
from p402.providers.base import HttpAdapter, StreamFault
from p402.providers.chat_over_converse import (ConverseChunkWriter, completion_from_converse,
                                               converse_request_from_chat, read_converse_usage)
from p402.providers.eventstream import EventMessage, EventStreamError, event_messages
from p402.providers.relay import Tally

__all__ = ["BedrockAdapter", "SIGNING_NAME", "DEFAULT_REGION"]

SIGNING_NAME = "bedrock"  # bedrock-runtime signs as "bedrock"
DEFAULT_REGION = "us-east-1"


def _tally_delta(doc: Mapping[str, Any], tally: Tally) -> None:
    delta = doc.get("delta") or {}
    tally.text(delta.get("text"))
    if isinstance(delta.get("toolUse"), dict):
        tally.text(delta["toolUse"].get("input"))
    if isinstance(delta.get("reasoningContent"), dict):
        tally.text(delta["reasoningContent"].get("text"))


async def _messages(resp: aiohttp.ClientResponse) -> Any:
    """The event-stream messages of a response; framing errors become stream faults."""
    try:
        async for message in event_messages(resp.content):
            yield message
    except EventStreamError as exc:
        raise StreamFault(f"corrupt event stream: {exc}") from exc


class BedrockAdapter(HttpAdapter):
    """Amazon Bedrock's runtime API (Converse)."""

    native_routes = frozenset({"chat"})
    upstream_format = "bedrock"

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        settings = dict(settings or {})
        self.region = str(settings.get("region") or os.environ.get("AWS_REGION")
                          or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)
        self.default_base_url = f"https://bedrock-runtime.{self.region}.amazonaws.com"
        super().__init__(name, settings)
        self._bearer = str(settings.get("api_key") or "")
        self._profile = settings.get("profile")
        self._credentials: Any = None

    def __repr__(self) -> str:  # never show a key
        return f"BedrockAdapter(name={self.name!r}, region={self.region!r}, base_url={self.base_url!r})"

    def url(self, model: str, stream: bool) -> str:
        # Model ids hold ':' and ARNs '/': both are escaped into one path segment, and the
        # signature is computed over exactly this (already escaped) path.
        return f"{self.base_url}/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"

    def _resolve_credentials(self) -> Any:
        import botocore.session  # type: ignore[import-untyped]  # botocore ships no type hints

        session = botocore.session.Session(profile=str(self._profile)) if self._profile else \
            botocore.session.get_session()
        return session.get_credentials()

    async def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            # The chain may read files or call the instance metadata service: not on the loop.
            self._credentials = await asyncio.to_thread(self._resolve_credentials)
            if self._credentials is None:
                raise UpstreamError(f"{self.name}: no AWS credentials found in the standard chain", 502,
                                    retryable=True)
        creds = self._credentials
        refresh_needed = getattr(creds, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            return await asyncio.to_thread(creds.get_frozen_credentials)
        return creds.get_frozen_credentials()

    async def headers(self, url: str, payload: bytes, stream: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   "Accept": "application/vnd.amazon.eventstream" if stream else "application/json"}
        if self._bearer:
            return {**headers, "Authorization": f"Bearer {self._bearer}"}
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        request = AWSRequest(method="POST", url=url, data=payload, headers=headers)
        SigV4Auth(await self._frozen_credentials(), SIGNING_NAME, self.region).add_auth(request)
        return dict(request.headers.items())

    async def _send(self, call: Call) -> Reply:
        model = str(call.body.get("model") or call.upstream_model)
        url = self.url(model, call.stream)
        payload = orjson.dumps(converse_request_from_chat(call.body))
        headers = await self.headers(url, payload, call.stream)
        sent = await self.post(call, URL(url, encoded=True), payload, headers)
        if isinstance(sent, Reply):
            return sent
        request_id = sent.headers.get("x-amzn-RequestId", "bedrock")
        if call.stream:
            return await self._stream(call, sent, model, request_id)
        _, doc = await self.read_json(sent)
        usage = Usage()
        if isinstance(doc.get("usage"), dict):
            read_converse_usage(doc["usage"], usage)
        else:
            tally = Tally(usage, call.input_tokens_bound)
            for block in ((doc.get("output") or {}).get("message") or {}).get("content") or ():
                tally.text(block.get("text"))
            tally.finish()
        body = orjson.dumps(completion_from_converse(doc, usage, model, request_id))
        return Reply(sent.status, body=body, usage=usage)

    async def _stream(self, call: Call, resp: aiohttp.ClientResponse, model: str, request_id: str) -> Reply:
        usage = Usage()
        tally = Tally(usage, call.input_tokens_bound)
        writer = ConverseChunkWriter(usage, call.client_wants_usage, model, request_id)

        def step(message: EventMessage | None) -> tuple[list[bytes], bool]:
            if message is None:
                if writer.finish is None:
                    raise StreamFault("the stream ended before messageStop")
                return writer.end_without_metadata(), True  # usage then comes from our own count
            try:
                doc = orjson.loads(message.payload) if message.payload else {}
            except orjson.JSONDecodeError as exc:
                raise StreamFault(f"unreadable {message.event_type} payload") from exc
            if message.message_type != "event":
                detail = doc.get("message") if isinstance(doc, dict) else None
                raise StreamFault(f"{message.event_type}: {detail or message.payload[:200]!r}")
            kind = message.event_type
            if kind == "contentBlockDelta":
                _tally_delta(doc, tally)
            elif kind == "metadata" and isinstance(doc.get("usage"), dict):
                read_converse_usage(doc["usage"], usage)
                tally.input_known = tally.output_known = True
            return writer.event(kind, doc), kind == "metadata"

        stream = await self.open_stream(resp, tally, step, _messages(resp))
        return Reply(resp.status, content_type="text/event-stream", chunks=stream, usage=usage)
