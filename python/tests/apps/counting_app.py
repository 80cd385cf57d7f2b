"""A tiny WSGI application for test_preload.py: each import appends the importing process's pid
to the file $COUNT_FILE, so the test can tell a fork from a new import."""

import json
import os
import sys
import time

with open(os.environ["COUNT_FILE"], "a") as f:
    f.write(f"{os.getpid()}\n")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "0.5"))
    if path == "/warm":
        with open(os.environ["COUNT_FILE"] + ".warm", "a") as f:
            f.write(f"{os.getpid()}\n")
    if path == "/fail":
        raise RuntimeError("this path fails")
    if path == "/print":
        print(f"line from {os.getpid()}: " + "x" * 200)
        print(f"error line from {os.getpid()}", file=sys.stderr, flush=True)
    body = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "path": path,
                       "script_name": environ.get("SCRIPT_NAME", ""),
                       "worker": os.environ.get("CTS_WORKER", ""),
                       "instance": os.environ.get("CTS_INSTANCE", ""),
                       "listen_pid": os.environ.get("LISTEN_PID", "")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
