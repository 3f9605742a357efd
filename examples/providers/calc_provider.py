#!/usr/bin/env python3
"""calc/v1: a Gleitzeit external provider in plain Python (standard library only).

It speaks JSON-RPC 2.0 over stdin/stdout, one JSON message per line, and answers
requests concurrently (one thread per request), so several tasks can use one process.

Methods (schemas are returned by `describe`):
  calc/add {a, b}            calc/multiply {a, b}       calc/divide {a, b}
  calc/sum {numbers}         calc/sleep {seconds, value?}   (slow work, for demos and tests)
  calc/info {}               calc/log {message}         (writes to stderr)
  calc/fail {message, retryable?}                       (fails on purpose)
  calc/crash {after_seconds?, exit_code?}               (kills the process on purpose)
  calc/crash_once {marker}   exits the process if the file `marker` does not exist yet
                             (creating it), answers {recovered: true, pid} once it does
Control methods, not part of the protocol: describe, health, ping.

Logs go to stderr, never stdout: stdout carries only JSON-RPC messages.
"""

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

PROTOCOL = "calc/v1"
NUMBER = {"type": "number"}


def pair(description):
    return {
        "description": description,
        "params": {
            "type": "object",
            "properties": {"a": NUMBER, "b": NUMBER},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    }


METHODS = {
    "calc/add": pair("a + b"),
    "calc/multiply": pair("a * b"),
    "calc/divide": pair("a / b (fails on b = 0)"),
    "calc/sum": {
        "description": "The sum of a list of numbers",
        "params": {
            "type": "object",
            "properties": {"numbers": {"type": "array", "items": NUMBER}},
            "required": ["numbers"],
            "additionalProperties": False,
        },
    },
    "calc/sleep": {
        "description": "Waits `seconds`, then returns {value, pid, active_at_start}",
        "params": {
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0}, "value": {}},
            "required": ["seconds"],
            "additionalProperties": False,
        },
    },
    "calc/info": {
        "description": "Process id, calls served, peak concurrency",
        "params": {"type": "object", "additionalProperties": False},
    },
    "calc/log": {
        "description": "Writes `message` to stderr",
        "params": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
            "additionalProperties": False,
        },
    },
    "calc/fail": {
        "description": "Fails with `message`; retryable when asked",
        "params": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "retryable": {"type": "boolean"}},
            "required": ["message"],
            "additionalProperties": False,
        },
    },
    "calc/crash": {
        "description": "Exits the process (after `after_seconds`) to test restarts",
        "params": {
            "type": "object",
            "properties": {
                "after_seconds": {"type": "number", "minimum": 0},
                "exit_code": {"type": "integer"},
            },
            "additionalProperties": False,
        },
    },
    "calc/crash_once": {
        "description": "Crashes the process the first time (creating `marker`), succeeds after",
        "params": {
            "type": "object",
            "properties": {"marker": {"type": "string", "minLength": 1}},
            "required": ["marker"],
            "additionalProperties": False,
        },
    },
}


class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


write_lock = threading.Lock()
state_lock = threading.Lock()
state = {"active": 0, "peak": 0, "served": 0}


def log(message):
    sys.stderr.write(f"[calc {os.getpid()}] {message}\n")
    sys.stderr.flush()


def send(message):
    line = json.dumps(message, separators=(",", ":"))
    with write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def number_params(params, *names):
    if not isinstance(params, dict):
        raise RpcError(-32602, "Invalid params", {"code": "INVALID_PARAMS", "retryable": False})
    values = []
    for name in names:
        v = params.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RpcError(
                -32602,
                f"Invalid params: '{name}' must be a number",
                {"code": "INVALID_PARAMS", "retryable": False},
            )
        values.append(v)
    return values


def call(method, params):
    params = params if params is not None else {}
    if method == "describe":
        return {
            "protocol": PROTOCOL,
            "description": "Arithmetic in a Python process",
            "methods": [{"name": n, **spec} for n, spec in METHODS.items()],
        }
    if method == "health":
        return {"healthy": True, "pid": os.getpid(), "active": state["active"]}
    if method == "ping":
        return "pong"
    if method == "calc/add":
        a, b = number_params(params, "a", "b")
        return a + b
    if method == "calc/multiply":
        a, b = number_params(params, "a", "b")
        return a * b
    if method == "calc/divide":
        a, b = number_params(params, "a", "b")
        if b == 0:
            raise RpcError(-32000, "division by zero", {"code": "TASK_EXECUTION_FAILED", "retryable": False})
        return a / b
    if method == "calc/sum":
        numbers = params.get("numbers") if isinstance(params, dict) else None
        if not isinstance(numbers, list):
            raise RpcError(-32602, "Invalid params: 'numbers' must be an array")
        return sum(numbers)
    if method == "calc/sleep":
        (seconds,) = number_params(params, "seconds")
        with state_lock:
            active = state["active"]
        time.sleep(seconds)
        return {"value": params.get("value"), "pid": os.getpid(), "active_at_start": active}
    if method == "calc/info":
        with state_lock:
            return {"pid": os.getpid(), "served": state["served"], "peak_active": state["peak"]}
    if method == "calc/log":
        log(str(params.get("message")))
        return None
    if method == "calc/fail":
        raise RpcError(
            -32000,
            str(params.get("message", "failed on request")),
            {"retryable": bool(params.get("retryable", False))},
        )
    if method == "calc/crash":
        delay = params.get("after_seconds", 0)
        code = params.get("exit_code", 3)
        log(f"crashing on request in {delay}s with exit code {code}")

        def die():
            time.sleep(delay)
            sys.stderr.flush()
            os._exit(code)

        threading.Thread(target=die, daemon=True).start()
        time.sleep(delay + 5)  # never answers: the process is gone first
        return None
    if method == "calc/crash_once":
        marker = str(params.get("marker"))
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            log(f"crash_once: {marker} created, exiting")
            sys.stderr.flush()
            os._exit(3)
        return {"recovered": True, "pid": os.getpid()}
    raise RpcError(-32601, "Method not found")


def handle(message):
    """Returns the response for one message, or None for a notification."""
    if (
        not isinstance(message, dict)
        or message.get("jsonrpc") != "2.0"
        or not isinstance(message.get("method"), str)
        or ("params" in message and not isinstance(message["params"], (dict, list)))
    ):
        return {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}
    is_notification = "id" not in message
    msg_id = message.get("id")
    if message["method"].startswith("$/"):  # e.g. $/cancelRequest: nothing to stop here
        return None
    with state_lock:
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
    try:
        result = call(message["method"], message.get("params"))
        response = {"jsonrpc": "2.0", "result": result, "id": msg_id}
    except RpcError as e:
        error = {"code": e.code, "message": e.message}
        if e.data is not None:
            error["data"] = e.data
        response = {"jsonrpc": "2.0", "error": error, "id": msg_id}
    except Exception as e:  # a bug in a method: report it, keep serving
        response = {"jsonrpc": "2.0", "error": {"code": -32603, "message": f"Internal error: {e}"}, "id": msg_id}
    finally:
        with state_lock:
            state["active"] -= 1
            state["served"] += 1
    return None if is_notification else response


def handle_line(line):
    try:
        payload = json.loads(line)
    except ValueError:
        send({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None})
        return
    if isinstance(payload, list):
        if not payload:
            send({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None})
            return
        answers = [a for a in (handle(m) for m in payload) if a is not None]
        if answers:
            send(answers)
        return
    answer = handle(payload)
    if answer is not None:
        send(answer)


def main():
    log(f"calc provider ready (pid {os.getpid()})")
    pool = ThreadPoolExecutor(max_workers=64)
    for line in sys.stdin:
        if line.strip():
            pool.submit(handle_line, line)
    log("stdin closed, finishing")
    pool.shutdown(wait=True)


if __name__ == "__main__":
    main()
