"""Small error pages a visitor can read, as HTML or JSON depending on `Accept`."""

from __future__ import annotations

import html
import json

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted",  # 201/202: webhook creation and redelivery
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    501: "Not Implemented",
    421: "Misdirected Request", 426: "Upgrade Required", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
    308: "Permanent Redirect",  # the plain-HTTP listener's redirect to HTTPS
}


def response(status: int, body: bytes, content_type: str, *, close: bool, extra: str = "",
             cache: str = "no-store") -> bytes:
    """A complete HTTP/1.1 response with a fixed-length body."""
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Cache-Control: {cache}\r\nServer: portway\r\n{extra}"
        f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def error_page(status: int, host: str | None, detail: str, accept: str | None, *, close: bool = True,
               extra: str = "") -> bytes:
    """The page for an edge error, as a whole HTTP/1.1 response."""
    body, content_type = error_body(status, host, detail, accept)
    return response(status, body, content_type, close=close, extra=extra)


def error_body(status: int, host: str | None, detail: str, accept: str | None) -> tuple[bytes, str]:
    """(body, content type) of an edge error page: names the host and says what happened, nothing internal."""
    reason = REASONS.get(status, "Error")
    if accept and "json" in accept and "html" not in accept:
        return json.dumps({"error": reason, "status": status, "host": host, "detail": detail}).encode(), \
            "application/json"
    safe_host = html.escape(host or "this host")
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{status} {reason}</title></head>"
        f"<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{status} {reason}</h1>"
        f"<p><b>{safe_host}</b>: {html.escape(detail)}</p><hr><small>portway</small></body></html>"
    )
    return page.encode(), "text/html; charset=utf-8"
