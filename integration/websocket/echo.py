#!/usr/bin/env python3
"""A WebSocket echo origin for the tests and the bench (Python `websockets`,
pinned by integration/install-deps): echoes every message on any path.

    echo.py [--cert CERT --key KEY] [--silent]

Prints `ACCEPT 127.0.0.1:<port>` once it listens. With --cert/--key it
speaks TLS (wss). With --silent it completes the handshake (101) and then
says nothing, never pings: an origin that goes quiet after the upgrade.
"""
import argparse
import asyncio
import ssl

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def silent(ws):
    await asyncio.sleep(3600)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--silent", action="store_true")
    a = p.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    handler = silent if a.silent else echo
    ping = None if a.silent else 20
    async with serve(handler, "127.0.0.1", 0, ssl=ctx, ping_interval=ping, max_size=2**20) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ACCEPT 127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
