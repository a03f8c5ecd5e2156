#!/usr/bin/env python3
"""A WebSocket client through Gatehouse, for the tests and the bench.

    client.py MODE PROXY USER:PASS|- URL [--ca CA] [--count N] [--size BYTES] [--seconds S]

MODE `absolute`: aiohttp, which sends a `ws://` upgrade to an HTTP proxy as
an absolute-form GET. MODE `connect`: Python `websockets`, which opens a
CONNECT to the proxy (a `ws://` URL is then plain HTTP inside the CONNECT,
a `wss://` URL TLS the proxy may intercept; --ca is the CA to trust).

Sends N messages of SIZE bytes (or as many as fit in S seconds), checks
each echo, and prints `OK <messages> <seconds>`; a refused handshake prints
`STATUS <code>`.
"""
import argparse
import asyncio
import os
import ssl
import sys
import time


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["absolute", "connect"])
    p.add_argument("proxy")
    p.add_argument("user")
    p.add_argument("url")
    p.add_argument("--ca")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=0)
    return p.parse_args()


async def exchange(send, recv, a):
    start = time.monotonic()
    n = 0
    while True:
        if a.seconds:
            if time.monotonic() - start >= a.seconds:
                break
        elif n >= a.count:
            break
        msg = os.urandom(a.size // 2).hex() + str(n)
        await send(msg)
        got = await recv()
        if got != msg:
            print(f"MISMATCH {n}", flush=True)
            sys.exit(1)
        n += 1
    print(f"OK {n} {time.monotonic() - start:.3f}", flush=True)


async def absolute(a):
    import aiohttp

    auth = aiohttp.BasicAuth(*a.user.split(":", 1)) if a.user != "-" else None
    timeout = aiohttp.ClientWSTimeout(ws_receive=10)
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(a.url, proxy=f"http://{a.proxy}", proxy_auth=auth, timeout=timeout)
        except aiohttp.WSServerHandshakeError as e:
            print(f"STATUS {e.status}", flush=True)
            return
        async with ws:
            await exchange(ws.send_str, ws.receive_str, a)


async def connect(a):
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus, InvalidProxyStatus

    ctx = None
    if a.url.startswith("wss:"):
        ctx = ssl.create_default_context(cafile=a.ca)
    proxy = f"http://{a.user}@{a.proxy}" if a.user != "-" else f"http://{a.proxy}"
    try:
        ws = await ws_connect(a.url, proxy=proxy, ssl=ctx, open_timeout=10, ping_interval=None)
    except InvalidStatus as e:
        print(f"STATUS {e.response.status_code}", flush=True)
        return
    except InvalidProxyStatus as e:
        print(f"PROXY {e.response.status_code}", flush=True)
        return
    async with ws:
        await exchange(ws.send, ws.recv, a)


a = parse()
asyncio.run(absolute(a) if a.mode == "absolute" else connect(a))
