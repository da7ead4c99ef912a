"""The exchanges of one HTTP/1.1 visitor connection, sans-IO: which request may go upstream when, and
what each response head means for the stream.

Responses are relayed as raw bytes and followed by a parser that cannot be told "this response has
no body" (HEAD) or "the stream changes protocol here" (CONNECT). So such a request is sent only when
no other response is owed, and nothing pipelined after it is sent until its response head arrived:
its response is then alone on the stream, and a fresh parser can take over after its head.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from portway.engine.summaries import Draft, redact_target

PLAIN, HEAD, CONNECT, UPGRADE = range(4)
# What a final response head means (`Exchanges.answer`)
BODY, ENDED, SWITCH, UNEXPECTED = range(4)


def kind_of(method: bytes, upgrade: bool) -> int:
    if method == b"HEAD":
        return HEAD
    if method == b"CONNECT":
        return CONNECT
    return UPGRADE if upgrade else PLAIN


@dataclass(slots=True, eq=False)
class Exchange:
    """One request, from its head until its response ended."""

    method: bytes
    target: bytes
    started: float
    kind: int
    close_after: bool = False  # the connection ends with this response (not keep-alive, declined switch)
    held: list[bytes] | None = None  # its bytes, while it may not go upstream yet
    status: int = 0
    request_bytes: int = 0
    draft: Draft | None = None  # its stream summary so far, while a watch wants summaries


class Exchanges(deque[Exchange]):
    """Requests owed a response, oldest first (a deque: length, truth and `popleft` stay in C, as this is
    consulted on every request and response)."""

    def open(self, ex: Exchange) -> bool:
        """Queue a request whose head was just read; True when its bytes must be held for now."""
        if self and (ex.kind or self[0].kind or self[-1].held is not None):
            ex.held = []
        self.append(ex)
        return ex.held is not None

    def releasable(self) -> tuple[bytes, bool]:
        """After a response ended: the held bytes that may go upstream now, and whether some still wait."""
        out: list[bytes] = []
        for i, ex in enumerate(self):
            held = ex.held
            if held is None:
                continue
            if i and (ex.kind or self[0].kind):
                return b"".join(out), True
            ex.held = None
            out.extend(held)
        return b"".join(out), False

    def answer(self, status: int) -> int:
        """A final (or 101) response head for the oldest request: BODY (its body follows), ENDED (a HEAD's
        response ends here), SWITCH (raw bytes from here on) or UNEXPECTED (no request, or a 101 that
        was not asked for)."""
        if not self:
            return UNEXPECTED
        ex = self[0]
        ex.status = status
        kind = ex.kind
        if not kind:
            return UNEXPECTED if status == 101 else BODY
        if status == 101:
            return SWITCH if kind == UPGRADE else UNEXPECTED
        if kind == CONNECT and 200 <= status < 300:
            return SWITCH
        if kind == HEAD:
            return ENDED
        ex.close_after = True  # the upstream declined the switch; what was pipelined after it is void
        return BODY


def access_line(tunnel: str, source: str | None, method: bytes, target: bytes, *, status: int, request_bytes: int,
                response_bytes: int, duration_s: float, error: str | None = None) -> str:
    """The access-log line of one request: `key=value` fields, no spaces inside values except in the
    quoted `error`; `status=0` when no response was sent. An `rstream.token` query value is replaced, on
    every path (token_auth strips it before forwarding, but a request refused earlier still carries it)."""
    line = (f"tunnel={tunnel} src={source} method={method.decode('latin-1') or '-'} "
            f"path={redact_target(target).decode('latin-1') or '-'} status={status} req_bytes={request_bytes} "
            f"resp_bytes={response_bytes} duration_ms={duration_s * 1000:.1f}")
    return f'{line} error="{error}"' if error else line
