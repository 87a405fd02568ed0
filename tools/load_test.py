#!/usr/bin/env python3
"""Load test for a running `mixture serve`: N concurrent streaming chat clients for a bounded
time, on loopback. Reports requests done and failed, aggregate generated tokens/s, p50/p99 time
to first token, and the server's resident memory (VmRSS of /proc/PID/status) at the start, the
middle and the end. Exits non-zero if any request failed. Standard library only.

    tools/load_test.py --url http://127.0.0.1:8080 [--clients 64] [--seconds 120] [--pid PID]

Without --pid, the server's pid is found as the process listening on the URL's port
(/proc/net/tcp inode -> /proc/*/fd).
"""

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Tell me about the sea.", "Write a short poem about autumn.", "Explain how a bicycle works.",
    "What is the capital of France and why is it famous?", "Give three tips for learning to cook.",
    "Describe a day in the life of a cat.", "Why is the sky blue?", "List some fruits and their colors.",
]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


def find_pid(port):
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for ln in f:
                    p = ln.split()
                    if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] == "0A":  # LISTEN
                        inodes.add(p[9])
        except OSError:
            pass
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def model_id(host, port, headers):
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", "/v1/models", headers=headers)
    r = c.getresponse()
    return json.loads(r.read())["data"][0]["id"]


def one_request(host, port, headers, body):
    """(ok, ttft seconds or None, completion tokens, error)."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=300)
    try:
        c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        r = c.getresponse()
        if r.status != 200:
            return False, None, 0, f"HTTP {r.status}: {r.read()[:200]!r}"
        ttft, tokens, done = None, None, False
        while True:
            ln = r.readline()
            if not ln:
                break
            ln = ln.strip()
            if not ln.startswith(b"data: "):
                continue
            data = ln[6:]
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                return False, ttft, 0, f"stream error: {ev['error']}"
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            if ttft is None and any(ch["delta"].get("content") or ch["delta"].get("reasoning_content") for ch in ev.get("choices", [])):
                ttft = time.perf_counter() - t0
        if not done or tokens is None:
            return False, ttft, 0, "stream ended without [DONE] or usage"
        return True, ttft, tokens, None
    except Exception as e:  # noqa: BLE001
        return False, None, 0, repr(e)
    finally:
        c.close()


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--api-key", default=os.environ.get("MIXTURE_API_KEY"))
    ap.add_argument("--pid", type=int, help="server pid for RSS (default: found from the port)")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = f"Bearer {a.api_key}"
    pid = a.pid or find_pid(port)
    mid = model_id(host, port, headers)

    lock = threading.Lock()
    ttfts, done, failed, tokens, errors = [], [0], [0], [0], []
    start = time.perf_counter()
    stop_at = start + a.seconds

    def client(i):
        rng = random.Random(i)
        n = 0
        while time.perf_counter() < stop_at:
            body = {"model": mid, "stream": True, "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": f"{rng.choice(PROMPTS)} (client {i}, request {n})"}],
                    "max_tokens": a.max_tokens, "temperature": 0.8, "seed": rng.randrange(1 << 30)}
            ok, ttft, ntok, err = one_request(host, port, headers, body)
            n += 1
            with lock:
                if ok:
                    done[0] += 1
                    tokens[0] += ntok
                    if ttft is not None:
                        ttfts.append(ttft)
                else:
                    failed[0] += 1
                    errors.append(err)

    rss = [("start", rss_kib(pid) if pid else None)]
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.clients)]
    for t in threads:
        t.start()
    time.sleep(a.seconds / 2)
    rss.append(("middle", rss_kib(pid) if pid else None))
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    rss.append(("end", rss_kib(pid) if pid else None))

    print(f"clients {a.clients}, {a.seconds:.0f} s bound, {elapsed:.1f} s elapsed, max_tokens {a.max_tokens}, model {mid}")
    print(f"requests done {done[0]}, failed {failed[0]}")
    print(f"generated tokens {tokens[0]}, {tokens[0] / elapsed:.1f} tok/s aggregate")
    print(f"time to first token p50 {pct(ttfts, 0.5) * 1000:.0f} ms, p99 {pct(ttfts, 0.99) * 1000:.0f} ms")
    print("server RSS (pid %s): " % pid + ", ".join(f"{k} {v / 1024:.1f} MiB" if v else f"{k} ?" for k, v in rss))
    for e in errors[:10]:
        print("error:", e, file=sys.stderr)
    sys.exit(1 if failed[0] or not done[0] else 0)


if __name__ == "__main__":
    main()
