#!/usr/bin/env python3
"""HTTP clients for tests/systemd/run.sh, run inside the test container with Debian's python3.

Each TARGET is PORT=INSTANCE: requests go to 127.0.0.1:PORT (loopback only) and an answer
counts as ok only when it is a complete `200` whose JSON body names INSTANCE.

  clients.py --once TARGET...               one request per target, in turn; exit 1 unless all ok
  clients.py --seconds S [--threads N] TARGET...
                                            N threads per target send requests back to back
                                            (a short pause between two) for S seconds

Either way it prints one summary line, `key=value` separated by spaces:
  requests ok refused reset timeout bad other failed max_ms   (and, with --once, `names=` the
  instance names the answers gave, in the targets' order)
refused counts ECONNREFUSED (nothing listening: what the fd store and socket units prevent);
reset a connection closed or reset before a whole answer; timeout no answer in --timeout
seconds; bad an answer that is not a 200 from INSTANCE; failed the sum of these last four.
Bounded: at most --max-requests requests in all, and every run ends after --seconds plus one
--timeout.
"""

import argparse
import errno
import json
import socket
import sys
import threading
import time

COUNTERS = ("requests", "ok", "refused", "reset", "timeout", "bad", "other")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.max_ms = 0.0
        self.first_problem = ""

    def add(self, outcome, ms, problem=""):
        with self.lock:
            self.counts["requests"] += 1
            self.counts[outcome] += 1
            self.max_ms = max(self.max_ms, ms)
            if problem and not self.first_problem:
                self.first_problem = problem

    def line(self):
        parts = [f"{k}={self.counts[k]}" for k in COUNTERS]
        c = self.counts
        parts.append(f"failed={c['reset'] + c['timeout'] + c['bad'] + c['other']}")
        parts.append(f"max_ms={self.max_ms:.0f}")
        return " ".join(parts)


def request(port, instance, timeout):
    """One GET; returns (outcome, parsed body or None, problem)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET /{instance} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except ConnectionRefusedError:
        return "refused", None, f"{port}: connection refused"
    except (ConnectionResetError, BrokenPipeError) as e:
        return "reset", None, f"{port}: {e}"
    except socket.timeout:
        return "timeout", None, f"{port}: no answer within {timeout}s"
    except OSError as e:
        if e.errno == errno.ECONNREFUSED:
            return "refused", None, f"{port}: connection refused"
        return "other", None, f"{port}: {e}"
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not raw:
        return "reset", None, f"{port}: closed without an answer"
    if not sep or not head.startswith(b"HTTP/1.1 200 "):
        return "bad", None, f"{port}: unexpected answer {raw[:80]!r}"
    length = None
    for h in head.split(b"\r\n")[1:]:
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is not None and len(body) < length:
        return "reset", None, f"{port}: answer cut after {len(body)} of {length} bytes"
    try:
        doc = json.loads(body)
    except ValueError:
        return "bad", None, f"{port}: body is not JSON: {body[:80]!r}"
    if doc.get("instance") != instance:
        return "bad", doc, f"{port}: answered by {doc.get('instance')!r}, not {instance!r}"
    return "ok", doc, ""


def parse_target(text):
    port, sep, instance = text.partition("=")
    if not sep or not port.isdigit() or not instance:
        raise argparse.ArgumentTypeError(f"expected PORT=INSTANCE, got {text!r}")
    return int(port), instance


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="+", type=parse_target, metavar="PORT=INSTANCE")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true")
    mode.add_argument("--seconds", type=float)
    ap.add_argument("--threads", type=int, default=2, help="per target (default 2)")
    ap.add_argument("--pause-ms", type=float, default=5.0, help="between two requests")
    ap.add_argument("--timeout", type=float, default=20.0, help="per request, seconds")
    ap.add_argument("--max-requests", type=int, default=200_000)
    args = ap.parse_args()

    tally = Tally()
    if args.once:
        names = []
        for port, instance in args.targets:
            t0 = time.monotonic()
            outcome, doc, problem = request(port, instance, args.timeout)
            tally.add(outcome, (time.monotonic() - t0) * 1000, problem)
            names.append((doc or {}).get("name", "-").replace(" ", "_"))
        print(tally.line(), "names=" + ",".join(names))
        if tally.first_problem:
            print("first problem:", tally.first_problem, file=sys.stderr)
        return 0 if tally.counts["ok"] == len(args.targets) else 1

    deadline = time.monotonic() + args.seconds
    budget = threading.Semaphore(args.max_requests)

    def loop(port, instance):
        while time.monotonic() < deadline and budget.acquire(blocking=False):
            t0 = time.monotonic()
            outcome, _, problem = request(port, instance, args.timeout)
            tally.add(outcome, (time.monotonic() - t0) * 1000, problem)
            time.sleep(args.pause_ms / 1000)

    threads = [threading.Thread(target=loop, args=t, daemon=True)
               for t in args.targets for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(tally.line())
    if tally.first_problem:
        print("first problem:", tally.first_problem, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
