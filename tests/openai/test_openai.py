"""The OpenAI API as the official `openai` Python client and `curl` see it, against a running
`mixture serve` (see conftest.py). Expected values come from properties of the API (usage sums,
greedy choice = top-1 logprob, stop = prefix of the unstopped text, schema validation...), or
from a second request, never from recorded output of this server."""

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import API_KEY, SMOLLM2, Server

MAX_CONTEXT = 1024


def model_id(server, key=API_KEY):
    return server.client(key).models.list().data[0].id


def raw(server, path, body=None, key=API_KEY, method=None, data=None, headers=None):
    """An HTTP request without the client library: (status, parsed JSON or text)."""
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    if data is None and body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def chat_args(server, **kw):
    a = {"model": model_id(server), "messages": [{"role": "user", "content": "Tell me about the sea."}], "max_tokens": 24}
    a.update(kw)
    return a


def chat_text(client, stream, **kw):
    """One choice's (text, finish_reason), streamed or not."""
    if stream:
        text, _, finish, _, _ = stream_chat(client, **kw)
        return text[0], finish[0]
    r = client.chat.completions.create(**kw)
    return r.choices[0].message.content, r.choices[0].finish_reason


def stream_chat(client, **kw):
    text, reasoning, finish, usage, chunks = {}, {}, {}, None, []
    for ch in client.chat.completions.create(stream=True, **kw):
        chunks.append(ch)
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            d = c.delta.to_dict()
            text[c.index] = text.get(c.index, "") + (d.get("content") or "")
            reasoning[c.index] = reasoning.get(c.index, "") + (d.get("reasoning_content") or "")
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    return text, reasoning, finish, usage, chunks


# ---------------------------------------------------------------- discovery and health


def test_health_models_and_curl(smol):
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", smol.url + "/health"], capture_output=True, text=True, check=True)
    assert out.stdout.rsplit("\n", 1)[1] == "200"
    models = smol.client(API_KEY).models.list().data
    assert len(models) == 1 and models[0].object == "model" and models[0].id == SMOLLM2.stem
    # curl, non-streaming and streaming chat.
    body = json.dumps(chat_args(smol, max_tokens=8, temperature=0))
    auth = ["-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json"]
    out = subprocess.run(["curl", "-sS", *auth, "-d", body, smol.url + "/v1/chat/completions"], capture_output=True, text=True, check=True)
    v = json.loads(out.stdout)
    assert v["object"] == "chat.completion" and v["choices"][0]["message"]["role"] == "assistant"
    sbody = json.dumps(json.loads(body) | {"stream": True})
    out = subprocess.run(["curl", "-sSN", *auth, "-d", sbody, smol.url + "/v1/chat/completions"], capture_output=True, text=True, check=True)
    events = [ln[len("data: "):] for ln in out.stdout.splitlines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if json.loads(e)["choices"])
    assert text == v["choices"][0]["message"]["content"]


def parse_prometheus(text):
    """{name{labels}: value}; every non-comment line must be `name[{labels}] value`."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)', ln)
        assert m, f"bad metrics line: {ln!r}"
        out[m.group(1)] = float(m.group(2))
    return out


def test_metrics_parse_and_move(smol, client):
    s, t0 = raw(smol, "/metrics", method="GET")
    assert s == 200
    before = parse_prometheus(t0)
    for name in ["mixture_generated_tokens_total", "mixture_prompt_tokens_total", "mixture_queue_depth"]:
        assert name in before
    r = client.chat.completions.create(**chat_args(smol, max_tokens=5, temperature=0))
    _, t1 = raw(smol, "/metrics", method="GET")
    after = parse_prometheus(t1)
    gen = after["mixture_generated_tokens_total"] - before["mixture_generated_tokens_total"]
    assert gen >= r.usage.completion_tokens  # other tests may run in between, never fewer
    assert after["mixture_prompt_tokens_total"] - before["mixture_prompt_tokens_total"] >= r.usage.prompt_tokens
    ok = lambda m: sum(v for k, v in m.items() if k.startswith("mixture_requests_total") and 'chat' in k and '"200"' in k)
    assert ok(after) >= ok(before) + 1
    assert any(k.startswith("mixture_time_to_first_token_seconds") for k in after)



# ---------------------------------------------------------------- chat and completions


@pytest.mark.parametrize("seed", [1, 7])
def test_chat_stream_equals_nonstream_and_usage(smol, client, seed):
    a = chat_args(smol, temperature=0.9, seed=seed, max_tokens=20)
    r = client.chat.completions.create(**a)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant"
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 1 <= u.completion_tokens <= 20
    if c.finish_reason == "length":
        assert u.completion_tokens == 20
    text, _, finish, usage, chunks = stream_chat(client, stream_options={"include_usage": True}, **a)
    assert text[0] == c.message.content
    assert finish[0] == c.finish_reason
    # include_usage: a final chunk with empty choices carries the usage, equal to the non-streaming one.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(ch.usage is None for ch in chunks[:-1])
    assert (usage.prompt_tokens, usage.completion_tokens) == (u.prompt_tokens, u.completion_tokens)
    # Without include_usage, no chunk has usage.
    _, _, _, usage2, _ = stream_chat(client, **a)
    assert usage2 is None


def test_completions_stream_equals_nonstream(smol, client):
    a = dict(model=model_id(smol), prompt="The history of the old city", max_tokens=16, temperature=0.7, seed=3)
    r = client.completions.create(**a)
    assert r.object == "text_completion" and r.usage.completion_tokens >= 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    text, last = "", None
    for ch in client.completions.create(stream=True, stream_options={"include_usage": True}, **a):
        for c in ch.choices:
            text += c.text
            if c.finish_reason:
                last = c.finish_reason
        if ch.usage:
            assert ch.usage.completion_tokens == r.usage.completion_tokens
    assert text == r.choices[0].text and last == r.choices[0].finish_reason


def test_max_completion_tokens_length(smol, client):
    r = client.chat.completions.create(**chat_args(smol, temperature=0, max_tokens=None, max_completion_tokens=3))
    assert r.usage.completion_tokens <= 3
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 3


def test_seed_reproducibility(smol, client):
    a = chat_args(smol, temperature=1.0, max_tokens=16)
    texts = {}
    for seed in [11, 12, 13, 14]:
        t1 = client.chat.completions.create(seed=seed, **a).choices[0].message.content
        t2 = client.chat.completions.create(seed=seed, **a).choices[0].message.content
        assert t1 == t2, f"seed {seed}: {t1!r} != {t2!r}"
        texts[seed] = t1
    assert len(set(texts.values())) > 1, "four seeds gave the same text: the seed does not reach the sampler"


def test_seed_reproducible_on_a_fresh_prompt(smol, client):
    """The same request twice, with a prompt the server has not seen: the first run computes the
    whole prompt, the second finds it in the prefix cache; the text must not depend on that."""
    for i in range(3):
        a = chat_args(smol, temperature=1.0, max_tokens=16, seed=i, logprobs=True,
                      messages=[{"role": "user", "content": f"Name a fruit, please ({time.time_ns()}-{i})."}])
        r1 = client.chat.completions.create(**a).choices[0]
        r2 = client.chat.completions.create(**a).choices[0]
        d = max(abs(x.logprob - y.logprob) for x, y in zip(r1.logprobs.content, r2.logprobs.content))
        assert r1.message.content == r2.message.content, f"{r1.message.content!r} != {r2.message.content!r} (max logprob diff {d:.4f})"


def test_stream_equals_nonstream_on_a_fresh_prompt(smol, client):
    a = chat_args(smol, temperature=0.8, max_tokens=16, seed=3,
                  messages=[{"role": "user", "content": f"Describe a river ({time.time_ns()})."}])
    r = client.chat.completions.create(**a).choices[0].message.content
    text, _, _, _, _ = stream_chat(client, **a)
    assert text[0] == r


def test_seed_same_alone_and_in_batch(smol, client):
    """Same seed, same text whether the request runs alone or with three others in the batch
    (the prompt is warmed first so that only batching differs)."""
    a = chat_args(smol, temperature=1.0, max_tokens=16, seed=99)
    client.chat.completions.create(**a)
    alone = client.chat.completions.create(**a).choices[0].message.content
    res = [None] * 4
    def go(i):
        b = dict(a) if i == 0 else chat_args(smol, temperature=1.0, max_tokens=24, seed=i, messages=[{"role": "user", "content": f"Count to {i}."}])
        res[i] = client.chat.completions.create(**b).choices[0].message.content
    ts = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert res[0] == alone


def test_stop_strings(smol, client):
    a = chat_args(smol, temperature=0, max_tokens=40)
    full = client.chat.completions.create(**a).choices[0].message.content
    assert len(full) > 12, full
    stop = full[8:11]
    expect = full[: full.index(stop)]
    for stops in [stop, ["zzzqqq", stop]]:
        r = client.chat.completions.create(stop=stops, **a)
        assert r.choices[0].message.content == expect
        assert r.choices[0].finish_reason == "stop"
        text, _, finish, _, _ = stream_chat(client, stop=stops, **a)
        assert text[0] == expect and finish[0] == "stop"
    # completions too
    c = dict(model=a["model"], prompt="Once upon a time", max_tokens=30, temperature=0)
    full = client.completions.create(**c).choices[0].text
    stop = full[6:9]
    r = client.completions.create(stop=stop, **c).choices[0]
    assert r.text == full[: full.index(stop)] and r.finish_reason == "stop"


def test_n_choices(smol, client):
    a = chat_args(smol, temperature=1.0, max_tokens=12, seed=5, n=2)
    r = client.chat.completions.create(**a)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens >= 2
    text, _, finish, usage, _ = stream_chat(client, stream_options={"include_usage": True}, **a)
    assert [text[0], text[1]] == [c.message.content for c in r.choices]
    assert usage.completion_tokens == r.usage.completion_tokens
    rc = client.completions.create(model=a["model"], prompt="A list of fruits:", max_tokens=8, n=2, temperature=1.0, seed=5)
    assert sorted(c.index for c in rc.choices) == [0, 1]


def test_logprobs(smol, client):
    r = client.chat.completions.create(logprobs=True, top_logprobs=3, **chat_args(smol, temperature=0, max_tokens=10))
    lp = r.choices[0].logprobs.content
    assert len(lp) == r.usage.completion_tokens
    for t in lp:
        assert t.logprob <= 1e-6 and len(t.top_logprobs) == 3
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # greedy: the chosen token is the most likely one
        assert abs(t.logprob - tops[0]) < 1e-4 and t.token == t.top_logprobs[0].token
        assert sum(2.718281828 ** x for x in tops) <= 1.0 + 1e-4
    assert "".join(t.token for t in lp).strip() == r.choices[0].message.content.strip()
    # streaming logprobs match
    got = []
    for ch in client.chat.completions.create(stream=True, logprobs=True, top_logprobs=3, **chat_args(smol, temperature=0, max_tokens=10)):
        for c in ch.choices:
            if c.logprobs and c.logprobs.content:
                got += c.logprobs.content
    assert [t.token for t in got] == [t.token for t in lp]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(got, lp))
    # legacy completions logprobs
    rc = client.completions.create(model=model_id(smol), prompt="Hello", max_tokens=5, temperature=0, logprobs=2)
    l = rc.choices[0].logprobs
    assert len(l.tokens) == len(l.token_logprobs) == len(l.top_logprobs) == rc.usage.completion_tokens
    assert all(len(x) <= 2 and max(x.values()) <= 1e-6 for x in l.top_logprobs)


# ---------------------------------------------------------------- response_format


def check_schema(v, s):
    """A small JSON Schema checker for what the test schema uses (jsonschema when present)."""
    try:
        import jsonschema
        jsonschema.validate(v, s)
        return
    except ImportError:
        pass
    t = s.get("type")
    if t == "object":
        assert isinstance(v, dict)
        for k in s.get("required", []):
            assert k in v, k
        for k, x in v.items():
            if k in s.get("properties", {}):
                check_schema(x, s["properties"][k])
            else:
                assert s.get("additionalProperties", True) is not False, k
    elif t == "array":
        assert isinstance(v, list)
        assert len(v) >= s.get("minItems", 0) and len(v) <= s.get("maxItems", 10**9)
        for x in v:
            check_schema(x, s["items"])
    elif t == "string":
        assert isinstance(v, str) and len(v) <= s.get("maxLength", 10**9)
        if "enum" in s:
            assert v in s["enum"]
    elif t == "integer":
        assert isinstance(v, int) and not isinstance(v, bool)
        assert s.get("minimum", -(10**18)) <= v <= s.get("maximum", 10**18)
    elif t == "boolean":
        assert isinstance(v, bool)


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "pet": {"type": "object", "properties": {"kind": {"type": "string", "enum": ["cat", "dog"]}, "indoor": {"type": "boolean"}},
                "required": ["kind", "indoor"], "additionalProperties": False},
        "mood": {"type": "string", "enum": ["happy", "sad"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
    },
    "required": ["name", "age", "mood", "tags", "pet"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema(smol, client, stream):
    a = chat_args(smol, max_tokens=120, temperature=0.8, seed=4,
                  messages=[{"role": "user", "content": "Describe a person as JSON."}],
                  response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}})
    text, finish = chat_text(client, stream, **a)
    assert finish == "stop", text
    check_schema(json.loads(text), SCHEMA)


def test_json_schema_unsupported_keyword_is_400(smol, client):
    """Keywords the constrained decoder cannot enforce (minimum/maximum) are refused, not ignored."""
    s = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["age"]}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**chat_args(smol, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": s}}))


def test_json_object(smol, client):
    # json_object constrains to a JSON object but not its size, and SmolLM2 sometimes repeats
    # keys until max_tokens (which seed does depends on the machine's float rounding). So: every
    # finished answer parses as an object, a cut one is still an object's start, and most of
    # four seeds finish, streaming and not.
    for stream in [False, True]:
        finished = 0
        for seed in range(4):
            a = chat_args(smol, max_tokens=150, temperature=0.5, seed=seed, response_format={"type": "json_object"},
                          messages=[{"role": "user", "content": "Give me a JSON object with a cat's name and age."}])
            text, finish = chat_text(client, stream, **a)
            assert finish in ("stop", "length"), finish
            if finish == "stop":
                assert isinstance(json.loads(text), dict), text
                finished += 1
            else:
                assert text.lstrip().startswith("{"), text
        assert finished >= 2, f"only {finished} of 4 seeds finished their object (stream={stream})"


# ---------------------------------------------------------------- reasoning (DeepSeek fixture)


def ds_args(deepseek, **kw):
    a = {"model": model_id(deepseek, None), "messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 12, "temperature": 0}
    a.update(kw)
    return a


def test_reasoning_fields(deepseek):
    """The R1 template opens <think>; the random model never closes it in 12 tokens, so all of
    its output is reasoning: reasoning_content == reasoning == the whole output, content empty.
    The raw completion of the same rendered prompt (greedy) gives the same text."""
    c = deepseek.client()
    r = c.chat.completions.create(**ds_args(deepseek))
    m = r.choices[0].message.to_dict()
    assert m["reasoning_content"] and m.get("reasoning") == m["reasoning_content"]
    assert (m.get("content") or "") == ""
    assert r.usage.completion_tokens == 12
    _, reasoning, _, _, chunks = stream_chat(c, **ds_args(deepseek))
    assert reasoning[0] == m["reasoning_content"]
    # the streamed deltas carry `reasoning` too
    deltas = [ch.choices[0].delta.to_dict() for ch in chunks if ch.choices]
    assert "".join(d.get("reasoning") or "" for d in deltas) == m["reasoning_content"]
    assert all(not d.get("content") for d in deltas)


def test_thinking_cap(deepseek):
    """max_thinking_tokens=3: reasoning is the uncapped greedy reasoning's first 3 tokens,
    then the server closes the block and the rest (if any) is the answer."""
    c = deepseek.client()
    full = c.chat.completions.create(**ds_args(deepseek, max_tokens=30)).choices[0].message.to_dict()
    capped = c.chat.completions.create(**ds_args(deepseek, max_tokens=30, extra_body={"max_thinking_tokens": 3})).choices[0].message.to_dict()
    assert capped["reasoning_content"] and full["reasoning_content"].startswith(capped["reasoning_content"].rstrip())
    assert len(capped["reasoning_content"]) < len(full["reasoning_content"])
    assert "<think>" not in (capped.get("content") or "") and "</think>" not in (capped.get("content") or "")
    none = c.chat.completions.create(**ds_args(deepseek, max_tokens=8, reasoning_effort="none")).choices[0].message.to_dict()
    assert not none.get("reasoning_content")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def check_tool_calls(msg, finish):
    calls = msg.tool_calls or []
    if calls:
        assert finish == "tool_calls"
    for t in calls:
        assert t.type == "function" and t.id and t.function.name
        json.loads(t.function.arguments)


@pytest.mark.parametrize("which", ["smol", "deepseek"])
def test_tools_accepted(request, which):
    """A request with tools, a tool_choice, and a history with a tool call and its result is
    accepted; any tool_calls in the answer are well formed. (Random/tiny models do not emit a
    call on their own: the parsing of DeepSeek's call markers is covered by the Rust tests.)"""
    srv = request.getfixturevalue(which)
    key = API_KEY if which == "smol" else None
    c = srv.client(key)
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        {"role": "user", "content": "And in Rome?"},
    ]
    for choice in ["auto", "none"]:
        r = c.chat.completions.create(model=model_id(srv, key), messages=msgs, tools=TOOLS, tool_choice=choice, max_tokens=16, temperature=0)
        check_tool_calls(r.choices[0].message, r.choices[0].finish_reason)
        if choice == "none":
            assert not r.choices[0].message.tool_calls


# ---------------------------------------------------------------- errors


def is_openai_error(v):
    return isinstance(v, dict) and isinstance(v.get("error"), dict) and isinstance(v["error"].get("message"), str) \
        and v["error"]["message"] and isinstance(v["error"].get("type"), str)


def test_malformed_requests_4xx_while_others_run(smol, client):
    mid = model_id(smol)
    good = {"model": mid, "messages": [{"role": "user", "content": "hi"}]}
    long_prompt = " ".join(["ocean"] * (MAX_CONTEXT + 200))
    cases = [
        ("malformed json", "/v1/chat/completions", dict(data=b'{"model": "x", "messages": [')),
        ("not an object", "/v1/chat/completions", dict(body=[1, 2])),
        ("messages wrong type", "/v1/chat/completions", dict(body={"model": mid, "messages": "hi"})),
        ("role wrong type", "/v1/chat/completions", dict(body={"model": mid, "messages": [{"role": 3, "content": "x"}]})),
        ("temperature wrong type", "/v1/chat/completions", dict(body=good | {"temperature": "hot"})),
        ("temperature out of range", "/v1/chat/completions", dict(body=good | {"temperature": 9})),
        ("max_tokens negative", "/v1/chat/completions", dict(body=good | {"max_tokens": -1})),
        ("n too large", "/v1/chat/completions", dict(body=good | {"n": 1000})),
        ("stop wrong type", "/v1/chat/completions", dict(body=good | {"stop": 5})),
        ("empty messages", "/v1/chat/completions", dict(body={"model": mid, "messages": []})),
        ("missing messages", "/v1/chat/completions", dict(body={"model": mid})),
        ("bad role", "/v1/chat/completions", dict(body={"model": mid, "messages": [{"role": "wizard", "content": "x"}]})),
        ("unknown model", "/v1/chat/completions", dict(body=good | {"model": "no-such-model"})),
        ("bad response_format", "/v1/chat/completions", dict(body=good | {"response_format": {"type": "yaml"}})),
        ("bad json_schema", "/v1/chat/completions", dict(body=good | {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}})),
        ("context too long (chat)", "/v1/chat/completions", dict(body={"model": mid, "messages": [{"role": "user", "content": long_prompt}]})),
        ("context too long (completions)", "/v1/completions", dict(body={"model": mid, "prompt": long_prompt})),
        ("completions empty prompt", "/v1/completions", dict(body={"model": mid, "prompt": ""})),
        ("completions prompt wrong type", "/v1/completions", dict(body={"model": mid, "prompt": {"a": 1}})),
        ("token id out of vocab", "/v1/completions", dict(body={"model": mid, "prompt": [10**8]})),
        ("no auth", "/v1/chat/completions", dict(body=good, key=None)),
        ("wrong key", "/v1/chat/completions", dict(body=good, key="wrong")),
        ("no auth models", "/v1/models", dict(key=None, method="GET")),
        ("oversized body", "/v1/chat/completions", dict(body={"model": mid, "messages": [{"role": "user", "content": "x" * 70000}]})),
        ("unknown route", "/v1/nothing", dict(body=good)),
        ("wrong method", "/v1/chat/completions", dict(method="GET")),
    ]
    # A well-formed streaming request runs all along.
    result = {}
    def run_good():
        try:
            text, _, finish, _, _ = stream_chat(client, **chat_args(smol, max_tokens=40, temperature=0))
            result["ok"] = (text[0], finish[0])
        except Exception as e:  # noqa: BLE001
            result["err"] = repr(e)
    t = threading.Thread(target=run_good)
    t.start()
    bad = []
    for name, path, kw in cases:
        status, v = raw(smol, path, **kw)
        expect_auth = name in ("no auth", "wrong key", "no auth models")
        if not (400 <= status < 500 and is_openai_error(v)) or (expect_auth and status != 401) \
                or (name == "oversized body" and status != 413) or (name == "unknown model" and status != 404):
            bad.append(f"{name}: {status} {str(v)[:200]}")
    # and a few well-formed ones in between still succeed
    s, v = raw(smol, "/v1/chat/completions", good | {"max_tokens": 4})
    assert s == 200, v
    t.join(120)
    assert "ok" in result, result
    assert not bad, "\n".join(bad)
    # the client library maps them to its exceptions
    with pytest.raises(openai.AuthenticationError):
        smol.client("nope").models.list()
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=mid, messages=[])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    s, _ = raw(smol, "/health", key=None, method="GET")
    assert s == 200


def test_max_tokens_beyond_context_is_bounded(smol, client):
    """max_tokens larger than the context is accepted (as llama.cpp does; OpenAI would 400) but
    generation stops at the --context limit with finish_reason length."""
    r = client.completions.create(model=model_id(smol), prompt="Chapter one. The", max_tokens=10**6, temperature=0)
    assert r.usage.prompt_tokens + r.usage.completion_tokens <= MAX_CONTEXT
    if r.choices[0].finish_reason == "length":
        assert r.usage.prompt_tokens + r.usage.completion_tokens == MAX_CONTEXT


def test_queue_full_429(small_queue):
    mid = model_id(small_queue, None)
    body = {"model": mid, "messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 64, "temperature": 0}
    statuses, bodies = [], []
    lock = threading.Lock()
    def go():
        s, v = raw(small_queue, "/v1/chat/completions", body, key=None)
        with lock:
            statuses.append(s)
            bodies.append(v)
    ts = [threading.Thread(target=go) for _ in range(6)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    assert statuses.count(200) <= 2 + 2, statuses  # at most parallel + queue at any moment (+ ones arriving after a finish)
    for s, v in zip(statuses, bodies):
        if s == 429:
            assert is_openai_error(v), v
    # the server is fine afterwards
    s, _ = raw(small_queue, "/v1/chat/completions", body | {"max_tokens": 2}, key=None)
    assert s == 200


def test_clean_shutdown_with_stream_in_flight():
    """SIGINT while a streaming request is generating: the process exits 0 within the limit and
    the client's stream ends (complete or cut), it does not hang."""
    s = Server(SMOLLM2, ["--parallel", "2"], "shutdown")
    c = s.client()
    got = {"chunks": 0}
    def go():
        try:
            for _ in c.chat.completions.create(model=model_id(s, None), messages=[{"role": "user", "content": "A long story."}], max_tokens=2000, stream=True):
                got["chunks"] += 1
            got["end"] = "done"
        except Exception as e:  # noqa: BLE001
            got["end"] = repr(e)
    t = threading.Thread(target=go)
    t.start()
    deadline = time.time() + 60
    while got["chunks"] < 3 and time.time() < deadline and t.is_alive():
        time.sleep(0.05)
    assert got["chunks"] >= 3, got
    rc, took = s.stop()
    assert rc == 0 and took < 10, (rc, took, s.log[-10:])
    t.join(15)
    assert not t.is_alive() and "end" in got
