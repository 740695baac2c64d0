"""The proxy-wasm boundary, end to end: bytes that are not UTF-8 in the headers a client sends
(HTTP/1.1 over TLS and plaintext, HTTP/2 with prior knowledge), under both of Envoy's failure
policies that an operator may run (FAIL_RELOAD, and FAIL_CLOSED as Istio 1.26's FAIL_CLOSE
configures it); and callouts that outlive their client, as Envoy makes them (root context).

Each hostile row was a VM panic on the SDK-based adapter (503 and a VM reload). Now each gets
its documented status, and after each: healthz 200, a genuine mint 201, no VM reload or new VM,
no panic in Envoy's log.
"""

from __future__ import annotations

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import Stack
from helpers import TOKEN_PATH, VM_FAILURE_MARKERS, mint, vm_counters
from misbehaving import Misbehaving
from stacklib.config import GATEWAY_HOST
from stacklib.envoy import generator

# (name, method, path, extra headers as bytes, needs a valid admin token, expected status)
ROWS = [
    ("user-agent on healthz", "GET", "/apis/sts/healthz", [(b"user-agent", b"Mozilla/5.0 \xa1\xb1")], False, 200),
    ("x-note on a mint", "PUT", TOKEN_PATH, [(b"x-note", b"\xff\xfe")], True, 201),
    ("latin-1 tenant", "PUT", TOKEN_PATH, [(b"cray-tenant-name", b"bl\xfce")], True, 403),
    ("bad utf-8 bearer", "PUT", TOKEN_PATH, [(b"authorization", b"Bearer \xc3\x28" + b"A" * 40)], False, 401),
]
PROTOCOLS = ["http1-tls", "http1", "h2c"]


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def http1(stack: Stack, method: str, path: str, headers: list[tuple[bytes, bytes]], tls: bool) -> int:
    """One HTTP/1.1 request with exactly these header bytes; the status Envoy answered."""
    port = stack.cfg.ports["https" if tls else "http"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    if tls:
        sock = ssl.create_default_context(cafile=str(stack.ca_file)).wrap_socket(sock, server_hostname=GATEWAY_HOST)
    with sock:
        head = f"{method} {path} HTTP/1.1\r\nhost: {GATEWAY_HOST}\r\n".encode()
        head += b"".join(n + b": " + v + b"\r\n" for n, v in headers)
        sock.sendall(head + b"content-length: 0\r\nconnection: close\r\n\r\n")
        answer = _read_all(sock)
    status_line = answer.split(b"\r\n", 1)[0]
    return int(status_line.split(b" ")[1])


def h2c(stack: Stack, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> int | None:
    """One HTTP/2 request (prior knowledge, plaintext) with these header bytes; None if Envoy
    reset the stream."""
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False)
    conn = h2.connection.H2Connection(config=cfg)
    with socket.create_connection(("127.0.0.1", stack.cfg.ports["http"]), timeout=15) as sock:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        pseudo = [(b":method", method.encode()), (b":path", path.encode()), (b":scheme", b"http")]
        conn.send_headers(sid, [*pseudo, (b":authority", GATEWAY_HOST.encode()), *headers], end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return status
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return status
            sock.sendall(conn.data_to_send())
    raise AssertionError("no answer over h2c")


def send(stack: Stack, protocol: str, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> int | None:
    if protocol == "h2c":
        return h2c(stack, method, path, headers)
    return http1(stack, method, path, headers, tls=protocol == "http1-tls")


def fail_closed(doc: dict) -> dict:
    for f in generator().wasm_filters(doc):
        f["typed_config"]["config"]["failure_policy"] = "FAIL_CLOSED"
    return doc


@pytest.mark.parametrize("policy", ["FAIL_RELOAD", "FAIL_CLOSED"])
def test_bytes_that_are_not_utf8_get_their_documented_answer(stack, policy):
    variant = {"envoy_patch": fail_closed} if policy == "FAIL_CLOSED" else {}
    token = stack.token("admin")
    with stack.envoy_variant(**variant) if variant else _same(stack):
        before, log_from = vm_counters(stack), len(stack.envoy_log())
        for name, method, path, headers, needs_token, expected in ROWS:
            auth = [(b"authorization", f"Bearer {token}".encode())] if needs_token else []
            for protocol in PROTOCOLS:
                got = send(stack, protocol, method, path, auth + headers)
                assert got == expected, f"{name} over {protocol} under {policy}: {got}, want {expected}"
                assert send(stack, protocol, "GET", "/apis/sts/healthz", []) == 200, (name, protocol)
                assert mint(stack, token).status_code == 201, (name, protocol)
        after, log = vm_counters(stack), stack.envoy_log()[log_from:]
        assert after == before, f"a Wasm VM was reloaded or re-created: {before} -> {after}"
        for marker in VM_FAILURE_MARKERS:
            assert marker not in log, f"{marker!r} in Envoy's log:\n{log[-2000:]}"


class _same:
    """The stack as it is (no restart), as a context manager."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def __enter__(self) -> Stack:
        return self.stack

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_ascii_twins_of_the_rows_answer_alike(stack):
    """The rows' answers come from the filter's reading of each header, not from the bytes:
    with ASCII stand-ins the statuses are the same."""
    token = stack.token("admin")
    twins = {
        "user-agent on healthz": [(b"user-agent", b"Mozilla/5.0 ab")],
        "x-note on a mint": [(b"x-note", b"ok")],
        "latin-1 tenant": [(b"cray-tenant-name", b"bl!e")],
        "bad utf-8 bearer": [(b"authorization", b"Bearer (" + b"A" * 40)],
    }
    for name, method, path, _, needs_token, expected in ROWS:
        auth = [(b"authorization", f"Bearer {token}".encode())] if needs_token else []
        assert http1(stack, method, path, auth + twins[name], tls=True) == expected, name


def _leave_mid_call(stack: Stack, token: str) -> None:
    """PUT a mint and reset the connection (SO_LINGER 0) before the answer."""
    sock = socket.create_connection(("127.0.0.1", stack.cfg.ports["http"]), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    req = f"PUT {TOKEN_PATH} HTTP/1.1\r\nhost: {GATEWAY_HOST}\r\nauthorization: Bearer {token}\r\n"
    sock.sendall((req + "content-length: 0\r\n\r\n").encode())
    time.sleep(0.3)  # inside RGW's 1.5 s delay: the call is in flight
    sock.close()


def _slow_rgw(stack: Stack, srv: Misbehaving, reuse: bool):
    overrides: dict = {"rgw": {"cluster": "slow_rgw", "timeout_ms": 5000}}
    if reuse:
        overrides["reuse"] = {"min_remaining_seconds": 600}
    return stack.envoy_variant(plugin_overrides=overrides, extra_clusters=[Stack.cluster("slow_rgw", srv.port)])


def test_clients_that_leave_mid_call_still_cost_one_assume_role_each(stack):
    """Envoy makes callouts on the root context: a client that resets does not cancel its
    AssumeRole. RGW (behind a delaying proxy that counts what it forwards) receives one per
    client, and the filter answers nobody twice."""
    token = stack.token("admin")
    with Misbehaving(upstream=stack.rgw_endpoint) as srv, _slow_rgw(stack, srv, reuse=False):
        assert mint(stack, token, via="http").status_code == 201  # control through the proxy
        srv.behave("slow", delay=1.5)
        first = srv.count()
        for _ in range(4):
            _leave_mid_call(stack, token)
        deadline = time.monotonic() + 10
        while srv.count() - first < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # any late extra call would show up here
        assert srv.count() - first == 4, srv.count() - first
        stats = stack.envoy_stats()
        assert stats.get("wasmcustom.sts_gateway_requests_client_gone", 0) >= 4, stats
        srv.behave("proxy")
        assert mint(stack, token, via="http").status_code == 201


def test_a_coalesced_call_is_sent_once_when_its_owner_leaves(stack):
    """With reuse on, requests of one caller share one AssumeRole per worker. All four go as
    streams of one HTTP/2 connection (so one worker, one store); the first one's stream is reset
    while RGW (behind a delaying proxy that counts what it forwards) is still answering: the call
    goes on, the three others get 201 from it, and RGW gets exactly one AssumeRole. The
    SDK-based adapter dropped the answer and sent a second one for the waiters."""
    token = stack.token("admin")
    with Misbehaving(upstream=stack.rgw_endpoint) as srv, _slow_rgw(stack, srv, reuse=True):
        srv.behave("slow", delay=1.5)
        first = srv.count()
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        with socket.create_connection(("127.0.0.1", stack.cfg.ports["http"]), timeout=15) as sock:
            conn.initiate_connection()

            def put() -> int:
                sid = conn.get_next_available_stream_id()
                headers = [
                    (":method", "PUT"),
                    (":path", TOKEN_PATH),
                    (":scheme", "http"),
                    (":authority", GATEWAY_HOST),
                    ("authorization", f"Bearer {token}"),
                ]
                conn.send_headers(sid, headers, end_stream=True)
                sock.sendall(conn.data_to_send())
                return sid

            owner = put()
            time.sleep(0.2)  # its AssumeRole is on its way
            waiters = [put() for _ in range(3)]
            time.sleep(0.2)
            conn.reset_stream(owner)
            sock.sendall(conn.data_to_send())
            statuses: dict[int, int] = {}
            ended: set[int] = set()
            deadline = time.monotonic() + 15
            while not set(waiters) <= ended and time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        ended.add(event.stream_id)
                sock.sendall(conn.data_to_send())
        assert [statuses.get(w) for w in waiters] == [201, 201, 201], statuses
        assert owner not in statuses, statuses
        time.sleep(1.0)
        assert srv.count() - first == 1, srv.count() - first
        stats = stack.envoy_stats()
        assert stats.get("wasmcustom.sts_gateway_requests_coalesced", 0) >= 3, stats
