#!/usr/bin/env python3
"""Batching check for a running `mixture serve`: aggregate generated tokens/s with C concurrent
requests against one request alone. Greedy completions of distinct prose openings with a fixed
max_tokens (the server has no `ignore_eos`; completions of story openings rarely end early, and
the counts come from each response's usage, so an early end only lowers the measured rate).
Prints both rates and their ratio (issue 5 asks >= 3x with C=8 on SmolLM2). Standard library only.

    tools/serve_throughput.py --url http://127.0.0.1:8080 [--concurrency 8] [--tokens 128] [--repeat 2]
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

OPENINGS = [
    "Chapter one. The old lighthouse keeper had lived alone on the island for thirty years, and every morning he",
    "The history of the river town begins in the spring of 1820, when a group of farmers from the north",
    "In the kitchen of the small restaurant, the new cook opened the cupboard and found",
    "The expedition left the coast at dawn. For the first three days the road through the forest",
    "My grandmother kept a garden behind the house. In it she grew tomatoes, beans and",
    "The report describes the design of the new railway bridge. The first section covers",
    "It was raining when the train reached the station. She stepped onto the platform and",
    "The museum's newest exhibition is about ancient ships. Visitors walk through a long hall where",
    "Every winter the village held a market in the square. Merchants came from far away to sell",
    "The letter arrived on a Tuesday. It was written in a careful hand, and it said that",
    "The scientists had been studying the glacier for a decade when they noticed that",
    "On the first page of the notebook there was a map of the city, with red marks next to",
    "The band played its first concert in a basement bar. Only eleven people came, but",
    "The recipe had been in the family for generations. It started with flour, butter and",
    "When the storm finally passed, the fishermen went down to the harbor to see",
    "The school stood at the end of a long dirt road. Every morning the children walked past",
]


def run_one(host, port, headers, model, prompt, tokens):
    c = http.client.HTTPConnection(host, port, timeout=600)
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0}
    c.request("POST", "/v1/completions", body=json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)["usage"]["completion_tokens"]


def batch(host, port, headers, model, prompts, tokens):
    """Run the prompts concurrently: (generated tokens, seconds)."""
    out = [0] * len(prompts)
    errs = []

    def go(i):
        try:
            out[i] = run_one(host, port, headers, model, prompts[i], tokens)
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))

    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(prompts))]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errs:
        raise RuntimeError("; ".join(errs))
    return sum(out), dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--concurrency", "-c", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each setting; the best rate counts")
    ap.add_argument("--api-key", default=os.environ.get("MIXTURE_API_KEY"))
    ap.add_argument("--min-ratio", type=float, default=0.0, help="exit 1 below this ratio")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = f"Bearer {a.api_key}"
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", "/v1/models", headers=headers)
    model = json.loads(c.getresponse().read())["data"][0]["id"]

    prompts = [OPENINGS[i % len(OPENINGS)] + ("" if i < len(OPENINGS) else f" ({i})") for i in range(a.concurrency + a.repeat)]
    # warm-up (page in the weights)
    batch(host, port, headers, model, prompts[:1], 8)
    single = []
    for r in range(a.repeat):
        n, dt = batch(host, port, headers, model, [prompts[a.concurrency + r]], a.tokens)
        single.append((n / dt, n, dt))
        print(f"1 request: {n} tokens in {dt:.2f} s = {n / dt:.1f} tok/s")
    multi = []
    for r in range(a.repeat):
        ps = prompts[r:] + prompts[:r]
        n, dt = batch(host, port, headers, model, ps[: a.concurrency], a.tokens)
        multi.append((n / dt, n, dt))
        print(f"{a.concurrency} requests: {n} tokens in {dt:.2f} s = {n / dt:.1f} tok/s aggregate")
    s, m = max(single)[0], max(multi)[0]
    print(f"best: 1 request {s:.1f} tok/s, {a.concurrency} requests {m:.1f} tok/s aggregate, ratio {m / s:.2f}x")
    sys.exit(1 if m / s < a.min_ratio else 0)


if __name__ == "__main__":
    main()
