#!/usr/bin/python3
"""A TCP proxy that adds a fixed latency to each direction of every connection.

The kernel on the test machines has no netem, so tests/integration/netns.sh puts this proxy in
front of the coordinator instead. Every chunk read from one side is written to the other side
DELAY ms after it was read: the delay is a pipe delay (chunks are not held back behind each other
beyond their own due time), so throughput is not reduced, only latency is added. Standard library
only (asyncio); run it with /usr/bin/python3.

  delay_proxy.py --listen HOST:PORT --target HOST:PORT --delay-ms 30 \
      [--ready-file F] [--stats-file F] [--max-seconds S]

--ready-file is written once the proxy listens; --stats-file gets a JSON summary (connections,
bytes and measured hold time per direction) on SIGTERM/SIGINT, at --max-seconds, and every 2 s.
The proxy stops by itself after --max-seconds (default 600) so that it can never outlive a test.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time

CHUNK = 65536
QUEUE_CHUNKS = 512  # at most 32 MiB held per direction; then the reader waits (TCP back-pressure)


class Stats:
    def __init__(self, delay_ms):
        self.delay_ms = delay_ms
        self.connections = 0
        self.open = 0
        self.errors = 0
        self.dirs = {
            d: {"bytes": 0, "chunks": 0, "hold_ms_sum": 0.0, "hold_ms_min": None, "hold_ms_max": 0.0}
            for d in ("to_target", "to_client")
        }

    def held(self, direction, nbytes, hold_ms):
        d = self.dirs[direction]
        d["bytes"] += nbytes
        d["chunks"] += 1
        d["hold_ms_sum"] += hold_ms
        d["hold_ms_max"] = max(d["hold_ms_max"], hold_ms)
        d["hold_ms_min"] = hold_ms if d["hold_ms_min"] is None else min(d["hold_ms_min"], hold_ms)

    def as_dict(self):
        out = {"delay_ms": self.delay_ms, "connections": self.connections, "open": self.open,
               "errors": self.errors}
        for name, d in self.dirs.items():
            mean = d["hold_ms_sum"] / d["chunks"] if d["chunks"] else None
            out[name] = {"bytes": d["bytes"], "chunks": d["chunks"],
                         "hold_ms_mean": None if mean is None else round(mean, 2),
                         "hold_ms_min": None if d["hold_ms_min"] is None else round(d["hold_ms_min"], 2),
                         "hold_ms_max": round(d["hold_ms_max"], 2)}
        return out


def hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


async def pump(reader, writer, delay, stats, direction):
    """Copies reader to writer, each chunk DELAY seconds after it was read; EOF travels too."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def read_side():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time(), data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), b""))

    async def write_side():
        while True:
            t_read, data = await queue.get()
            wait = t_read + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                return
            writer.write(data)
            await writer.drain()
            stats.held(direction, len(data), (loop.time() - t_read) * 1000.0)

    rd = asyncio.ensure_future(read_side())
    try:
        await write_side()
    finally:
        rd.cancel()


async def handle(client_r, client_w, args, stats):
    stats.connections += 1
    stats.open += 1
    conn = stats.connections
    peer = client_w.get_extra_info("peername")
    t0 = time.monotonic()
    why = "closed"
    target_w = None
    try:
        target_r, target_w = await asyncio.wait_for(
            asyncio.open_connection(args.target[0], args.target[1]), timeout=10)
        for w in (client_w, target_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        delay = args.delay_ms / 1000.0
        up = asyncio.ensure_future(pump(client_r, target_w, delay, stats, "to_target"))
        down = asyncio.ensure_future(pump(target_r, client_w, delay, stats, "to_client"))
        # ZeroMQ never half-closes: once either direction ends (EOF or error), the connection is over.
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        why = "EOF from the client" if up in done else "EOF from the target"
        for t in done:
            if t.exception() is not None:
                stats.errors += 1
                why = f"{t.exception()!r}"
    except (ConnectionError, OSError, asyncio.TimeoutError) as e:
        stats.errors += 1
        why = f"{e!r}"
    finally:
        stats.open -= 1
        print(f"delay_proxy: connection {conn} from {peer[0]}:{peer[1]} ended after "
              f"{time.monotonic() - t0:.1f} s: {why}", flush=True)
        for w in (client_w, target_w):
            if w is not None:
                try:
                    w.close()
                except Exception:
                    pass


def write_stats(path, stats):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats.as_dict(), f)
        f.write("\n")
    os.replace(tmp, path)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=hostport, required=True)
    ap.add_argument("--target", type=hostport, required=True)
    ap.add_argument("--delay-ms", type=float, default=30.0)
    ap.add_argument("--ready-file")
    ap.add_argument("--stats-file")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args()

    stats = Stats(args.delay_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server = await asyncio.start_server(lambda r, w: handle(r, w, args, stats),
                                        args.listen[0], args.listen[1], reuse_address=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{args.listen[0]}:{args.listen[1]}\n")
    print(f"delay_proxy: {args.listen[0]}:{args.listen[1]} -> {args.target[0]}:{args.target[1]}, "
          f"+{args.delay_ms:g} ms each way", flush=True)

    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(stop.wait(), timeout=2.0)
        except asyncio.TimeoutError:
            pass
        write_stats(args.stats_file, stats)
    server.close()
    write_stats(args.stats_file, stats)
    print("delay_proxy: " + json.dumps(stats.as_dict()), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
