"""Reading HTTP answers off a bare socket, for the tests that must control every byte sent."""

import socket


def read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer: its head, then as many bytes as its Content-Length says."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole head: {answer[:200]!r}")
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    length = int(lengths[0].split(b":")[1]) if lengths else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the whole body")
        body += chunk
    return head + b"\r\n\r\n" + body
