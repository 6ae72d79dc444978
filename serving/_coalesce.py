"""One socket write per response: uvicorn writes a response's status line + headers and its body separately.

Each ``write`` on a loopback/LAN socket wakes the client; with two writes the client wakes on the headers,
finds no body, sleeps again and is woken a second time. On a busy 2-core machine every extra wake-up is a trip
through the run queue for both sides, and it showed in the c=1 tail (py-spy: the header write was the single
hottest line with the GIL held). This patch, applied once per worker process by ``serving._service``, keeps the
header bytes of a response and sends them with its first body chunk in one ``transport.write``.

It touches only uvicorn's httptools protocol (the one BentoML's workers run), keeps every check uvicorn makes
(content length, HEAD, chunked encoding, disconnects) and is a no-op if uvicorn's internals ever change shape.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_PATCHED = False


class _Capture:
    """Stands in for the transport while uvicorn writes the headers: keeps the bytes instead of sending them."""

    __slots__ = ("chunks", "transport")

    def __init__(self, transport) -> None:
        self.transport = transport
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


class _Prefix:
    """Stands in for the transport during the first body write: sends the kept headers and the body together."""

    __slots__ = ("head", "transport")

    def __init__(self, transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.transport.write(head + bytes(data) if head else data)

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


def install() -> bool:
    """Patch uvicorn's httptools ``RequestResponseCycle.send`` (idempotent). Returns whether it is active."""
    global _PATCHED
    if _PATCHED:
        return True
    try:
        from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    except ImportError:  # pragma: no cover - uvicorn without httptools: nothing to patch
        return False
    original = RequestResponseCycle.send
    if getattr(original, "_learnloop_coalesced", False):
        _PATCHED = True
        return True

    async def send(self, message) -> None:
        kind = message.get("type")
        if kind == "http.response.start" and not self.response_started:
            transport = self.transport
            capture = _Capture(transport)
            self.transport = capture
            try:
                await original(self, message)
            finally:
                self.transport = transport
            if capture.chunks:
                self._learnloop_head = b"".join(capture.chunks)
            return
        head = getattr(self, "_learnloop_head", None)
        if head is None:
            await original(self, message)
            return
        self._learnloop_head = None
        transport = self.transport
        prefix = _Prefix(transport, head)
        self.transport = prefix
        try:
            await original(self, message)
        finally:
            self.transport = transport
        if prefix.head and not self.disconnected:  # the body write never happened (e.g. an empty HEAD answer)
            transport.write(prefix.head)

    send._learnloop_coalesced = True  # type: ignore[attr-defined]
    RequestResponseCycle.send = send
    _PATCHED = True
    return True
