"""A small blocking Server-Sent Events client for the dashboard tests.

It reads the stream on a thread over a plain HTTP/1.1 connection (as a browser's
EventSource does) and hands each parsed event to a queue, so a test can wait for
events with a timeout while it drives traffic through the gateway.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


END = SseEvent("<end>", "", None)  # put on the queue when the server closes the stream


class SseClient:
    """Open with `SseClient(url, headers)`; read with `next()`; `close()` when done."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        self.conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                          headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self.comments = 0
        self.reader = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        if self.status == 200:
            self.reader.start()

    def _read(self) -> None:
        event, data, ident = "message", [], None
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        self.events.put(SseEvent(event, "\n".join(data), ident))
                    event, data, ident = "message", [], None
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        ident = value
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # close() shut the socket under us; http.client then fails in one of these ways
        self.events.put(END)

    def next(self, timeout_s: float = 15.0) -> SseEvent:
        """The next event; raises queue.Empty if none comes in time."""
        return self.events.get(timeout=timeout_s)

    def next_of(self, kind: str, timeout_s: float = 15.0) -> SseEvent:
        """The next event of one kind, skipping others."""
        while True:
            e = self.next(timeout_s)
            if e.event in (kind, END.event):
                return e

    def close(self) -> None:
        """Hang up (as a browser tab closing does), then let the reader finish before freeing the connection."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.reader.is_alive():
            self.reader.join(10)
        self.response.close()
        self.conn.close()
