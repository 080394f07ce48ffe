"""The direct transport's HTTP client (judge/httpclient.py) against raw servers on 127.0.0.1 that
answer in each framing HTTP/1.1 allows, close kept-alive connections, stall, or refuse."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest

from rubric_judge.judge import httpclient
from rubric_judge.judge.httpclient import ConnectionPool, HTTPClientError
from rubric_judge.judge.retry import is_unreachable
from rubric_judge.judge.transport import DirectClient, JudgeConnectionError


class RawServer:
    """Accepts connections and answers each request with `answer(request_index)` (bytes; None:
    close without answering), then keeps the connection open or closes it (`close_after`)."""

    def __init__(self, answer, close_after: bool = False, stall: bool = False):
        self.answer = answer
        self.close_after = close_after
        self.stall = stall
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if self.stall:
                    await asyncio.sleep(30)
                answer = self.answer(len(self.requests) - 1)
                if answer is None:  # close without answering
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def _json_answer(index: int) -> bytes:
    body = json.dumps({"choices": [], "index": index}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_requests_reuse_one_kept_alive_connection_and_send_the_given_headers() -> None:
    async def main() -> None:
        async with RawServer(_json_answer) as server:
            pool = ConnectionPool(server.url, limit=4)
            answers = [await pool.post(server.url, {"Authorization": "Bearer k", "Content-Type": "application/json"}, b'{"a":1}', 5)
                       for _ in range(3)]
            await pool.close()
        assert [json.loads(a.body)["index"] for a in answers] == [0, 1, 2]
        assert answers[0].status == 200 and answers[0].headers["content-type"] == "application/json"
        assert server.connections == 1
        head = server.requests[0].decode()
        assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}\r\n" in head
        assert "Authorization: Bearer k\r\n" in head and "Content-Length: 7\r\n" in head and head.endswith('{"a":1}')

    asyncio.run(main())


def test_concurrent_requests_open_at_most_limit_connections() -> None:
    async def main() -> None:
        async with RawServer(_json_answer) as server:
            pool = ConnectionPool(server.url, limit=3)
            answers = await asyncio.gather(*(pool.post(server.url, {}, b"{}", 5) for _ in range(12)))
            await pool.close()
        assert len(answers) == 12 and all(a.status == 200 for a in answers)
        assert server.connections <= 3

    asyncio.run(main())


@pytest.mark.parametrize("framing", ["chunked", "until-close", "error-status"])
def test_answers_in_every_framing_are_read_whole(framing: str) -> None:
    payload = b'{"choices": [], "text": "' + b"x" * 100_000 + b'"}'
    if framing == "chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 30_000]), payload[i:i + 30_000]) for i in range(0, len(payload), 30_000))
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    elif framing == "until-close":
        raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + payload
    else:
        raw = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}"

    async def main():
        async with RawServer(lambda index: raw, close_after=framing == "until-close") as server:
            pool = ConnectionPool(server.url, limit=2)
            first = await pool.post(server.url, {}, b"{}", 5)
            second = await pool.post(server.url, {}, b"{}", 5)  # on the same or, after a close, a new connection
            await pool.close()
            return first, second, server.connections

    first, second, connections = asyncio.run(main())
    if framing == "error-status":
        assert first.status == 429 and first.headers["retry-after"] == "3" and first.body == b"{}"
    else:
        assert first.status == 200 and first.body == payload == second.body
    assert connections == (2 if framing == "until-close" else 1)


def test_a_kept_alive_connection_the_server_closed_is_replaced_once_without_an_error() -> None:
    """A server may close an idle kept-alive connection just as the next request goes out on it:
    the request then meets a close before any answer, and is sent again on a new connection."""

    def answer(index: int) -> bytes | None:
        return None if index == 1 else _json_answer(index)  # the second request: closed unanswered

    async def main():
        async with RawServer(answer) as server:
            pool = ConnectionPool(server.url, limit=1)
            first = await pool.post(server.url, {}, b"{}", 5)
            second = await pool.post(server.url, {}, b"{}", 5)
            await pool.close()
            return first, second, server.connections, len(server.requests)

    first, second, connections, requests = asyncio.run(main())
    assert (first.status, second.status, connections, requests) == (200, 200, 2, 3)
    assert json.loads(second.body)["index"] == 2


def test_a_server_that_closes_without_answering_is_an_error_and_a_stalled_one_a_timeout() -> None:
    async def main():
        async with RawServer(lambda index: b"", close_after=True) as closing:
            with pytest.raises(HTTPClientError, match="closed the connection before it finished answering"):
                await ConnectionPool(closing.url, 1).post(closing.url, {}, b"{}", 5)
        async with RawServer(lambda index: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", close_after=True) as short:
            with pytest.raises(HTTPClientError, match="closed the connection"):
                await ConnectionPool(short.url, 1).post(short.url, {}, b"{}", 5)
        async with RawServer(lambda index: b"not http at all\r\n\r\n") as garbage:
            with pytest.raises(HTTPClientError, match="not valid HTTP"):
                await ConnectionPool(garbage.url, 1).post(garbage.url, {}, b"{}", 5)
        async with RawServer(_json_answer, stall=True) as stalled:
            with pytest.raises(TimeoutError):
                await ConnectionPool(stalled.url, 1).post(stalled.url, {}, b"{}", 0.3)

    asyncio.run(main())


def test_an_oversized_answer_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(httpclient, "MAX_RESPONSE_BYTES", 1000)

    async def main():
        async with RawServer(lambda index: b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000) as server:
            with pytest.raises(HTTPClientError, match="larger than"):
                await ConnectionPool(server.url, 1).post(server.url, {}, b"{}", 5)

    asyncio.run(main())


def test_a_refused_connection_reads_as_unreachable_through_the_direct_client() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main():
        async with DirectClient(f"http://127.0.0.1:{port}/v1", "k", 2) as client:
            await client.post("openai/m", {"messages": []}, 5)

    with pytest.raises(JudgeConnectionError) as raised:
        asyncio.run(main())
    assert is_unreachable(raised.value) and f"127.0.0.1:{port}" in str(raised.value)


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    pool = ConnectionPool("http://127.0.0.1:9/v1", 1)
    with pytest.raises(ValueError, match="line break"):
        asyncio.run(pool.post("http://127.0.0.1:9/v1/chat/completions", {"Authorization": "Bearer k\r\nX-Injected: 1"}, b"{}", 1))


def test_https_verifies_the_server_against_the_trusted_certificates(tmp_path, monkeypatch) -> None:
    """An https judge: TLS with the system's trust store (here SSL_CERT_FILE names a self-signed
    certificate for 127.0.0.1), and a refusal, not an answer, from a server it does not trust."""
    pytest.importorskip("cryptography")
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback judge")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "judge.pem", tmp_path / "judge.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            writer.write(_json_answer(0))
            await writer.drain()
        writer.close()

    async def main(trusted: bool):
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file if trusted else tmp_path / "nothing-trusted.pem"))
        try:
            return await ConnectionPool(url, 1).post(url, {}, b"{}", 5)
        finally:
            server.close()

    assert asyncio.run(main(trusted=True)).status == 200
    with pytest.raises(HTTPClientError, match="cannot connect") as raised:
        asyncio.run(main(trusted=False))
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)
    # Every attempt fails the same way: it counts toward --max-unreachable, which stops the run
    # with this message instead of retrying every call.
    assert is_unreachable(raised.value) and "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
