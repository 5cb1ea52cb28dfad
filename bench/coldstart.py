"""Cold start of `recado serve`: the time from exec to its "listening on" line, timed from outside.

Usage: python3 bench/coldstart.py BINARY [RUNS] [--drop-caches]

Each run starts the server on a fresh data directory (it creates the store, the index and the keys), stops
it, and starts it again on the same directory. With --drop-caches (root only), the page cache is dropped
before each fresh start, so the binary itself is read from disk.
"""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def start(binary, data):
    began = time.perf_counter()
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "error"},
    )
    line = process.stdout.readline().decode()
    took = (time.perf_counter() - began) * 1000
    if not line.startswith("listening on"):
        raise SystemExit(f"the server did not start: {line!r}")
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return took


def summary(name, times):
    return f"{name}: median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f})"


def main():
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    drop = "--drop-caches" in sys.argv
    binary, runs = args[0], int(args[1]) if len(args) > 1 else 5
    fresh, again = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as data:
            if drop:
                os.system("sync; echo 3 > /proc/sys/vm/drop_caches")
            fresh.append(start(binary, data))
            again.append(start(binary, data))
    print(summary("fresh data directory", fresh))
    print(summary("existing data directory", again))


main()
