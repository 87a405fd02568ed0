#!/usr/bin/env python3
"""Render real chat templates with transformers and record the results as test fixtures.

For each template below this script renders a fixed set of conversations with transformers' own
renderer (`transformers.utils.chat_template_utils.render_jinja_template`, the function
`apply_chat_template(..., tokenize=False)` calls, with its sandboxed Jinja environment,
`raise_exception`, `strftime_now` and `tojson`) and writes
`tests/fixtures/chat_templates/<name>.json`:

    {"template": source, "bos_token": ..., "eos_token": ..., "now_unix": N,
     "cases": [{"name", "messages", "add_generation_prompt", "extra"?, "expected" | "error"}]}

`crates/model/tests/chat_template.rs` renders every case with `mixture_model::chat_template`
and asserts the result equals `expected` byte for byte, or that rendering fails where
transformers raised (`error` holds transformers' message, for reading only).

Templates: the real ones shipped in the llama-cpp-python 0.3.36 sdist under
`vendor/llama.cpp/models/templates/` (found with tools/fetch_llama_cpp_sdist.sh, or
LLAMA_CPP_DIR), plus SmolLM2-135M-Instruct's own template read from the GGUF's
`tokenizer.chat_template` with gguf-py (tools/fetch_smollm2.sh fetches the model).

Messages follow the conventions of transformers' `apply_chat_template`: keys whose value is None
are left out; `reasoning_content` is also exposed to the template as `thinking` (transformers
aliases it). `strftime_now` is pinned to `now_unix` (UTC) so fixtures are reproducible; the
Rust test pins the same instant. Message keys are in the field order of our
`Message` (role, content, reasoning_content, tool_calls); dict keys of tool calls and tools are
written sorted, so the
order the Rust side sees (serde_json's sorted maps) equals the order transformers saw.

Needs transformers (5.x), jinja2 >= 3.1.6 and gguf-py. Run from the repository root:

    python3 tools/make_template_fixtures.py

Deterministic: a rerun writes byte-identical files.
"""
import copy
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import transformers.utils.chat_template_utils as ctu

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "chat_templates"
CACHE = Path(os.environ.get("MIXTURE_CACHE", Path.home() / ".cache" / "mixture"))
NOW_UNIX = 1736942400  # 2025-01-15 12:00:00 UTC

DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
QWEN = ("", "<|im_end|>")  # Qwen's tokenizer_config has bos_token null
SMOLLM3 = ("", "<|im_end|>")  # bos_token null as well

# fixture name -> (template file in the sdist's models/templates, bos, eos)
TEMPLATES = {
    "deepseek-r1-distill-qwen": ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", *DEEPSEEK),
    "deepseek-r1-distill-llama": ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", *DEEPSEEK),
    "deepseek-v3.1": ("deepseek-ai-DeepSeek-V3.1.jinja", *DEEPSEEK),
    "llama-cpp-deepseek-r1": ("llama-cpp-deepseek-r1.jinja", *DEEPSEEK),
    "qwen2.5-instruct": ("Qwen-Qwen2.5-7B-Instruct.jinja", *QWEN),
    "llama-3.1-instruct": ("meta-llama-Llama-3.1-8B-Instruct.jinja", *LLAMA3),
    "llama-3.2-instruct": ("meta-llama-Llama-3.2-3B-Instruct.jinja", *LLAMA3),
    "llama-3.3-instruct": ("meta-llama-Llama-3.3-70B-Instruct.jinja", *LLAMA3),
    "smollm3": ("HuggingFaceTB-SmolLM3-3B.jinja", *SMOLLM3),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", *QWEN),
    "qwq-32b": ("Qwen-QwQ-32B.jinja", *QWEN),
    "deepseek-v3.2": ("deepseek-ai-DeepSeek-V3.2.jinja", *DEEPSEEK),
    "mistral-nemo-instruct": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    "gpt-oss": ("openai-gpt-oss-120b.jinja", "<|startoftext|>", "<|return|>"),
}

SYSTEM = {"role": "system", "content": "You are a concise assistant.  "}
USER1 = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT1 = {"role": "assistant", "content": "The capital of France is Paris."}
USER2 = {"role": "user", "content": "  And of Germany? Ünïcödé ✓ 日本語\n"}
REASONING = {
    "role": "assistant",
    "content": "Paris.",
    "reasoning_content": "The user asks about France. Its capital is Paris.",
}
THINK_IN_CONTENT = {
    "role": "assistant",
    "content": "<think>\nFrance's capital is Paris.\n</think>\n\nParis.",
}
TOOL = {
    "type": "function",
    "function": {"description": "Current weather in a city", "name": "get_weather",
                 "parameters": {"properties": {"city": {"type": "string"}},
                                "required": ["city"], "type": "object"}},
}
CALL = {"function": {"arguments": {"city": "Paris"}, "name": "get_weather"},
        "id": "call_1", "type": "function"}
CALL2 = {"function": {"arguments": {"city": "Berlin"}, "name": "get_weather"},
         "id": "call_2", "type": "function"}
TOOL_TURN = {"role": "assistant", "content": "", "tool_calls": [CALL]}
TOOL_RESULT = {"role": "tool", "content": "{\"temperature\": 21}"}

CASES = [
    ("system_user_prompt", [SYSTEM, USER1], True, None),
    ("system_user_no_prompt", [SYSTEM, USER1], False, None),
    ("multi_turn", [SYSTEM, USER1, ASSISTANT1, USER2], True, None),
    ("no_system", [USER1], True, None),
    ("no_system_multi_turn", [USER1, ASSISTANT1, USER2], True, None),
    ("ends_with_assistant", [USER1, ASSISTANT1], False, None),
    ("reasoning_content", [SYSTEM, USER1, REASONING, USER2], True, None),
    ("reasoning_last_turn", [USER1, REASONING], False, None),
    ("think_in_content", [USER1, THINK_IN_CONTENT, USER2], True, None),
    ("thinking_off", [SYSTEM, USER1, ASSISTANT1, USER2], True, {"enable_thinking": False}),
    ("thinking_on", [USER1], True, {"enable_thinking": True, "thinking": True}),
    ("tool_call", [USER1, TOOL_TURN, TOOL_RESULT], True, {"tools": [TOOL]}),
    ("two_tool_calls", [USER1, {**TOOL_TURN, "tool_calls": [CALL, CALL2]}, TOOL_RESULT], True, None),
    ("empty", [], True, None),
]


def sort_keys(x):
    if isinstance(x, dict):
        return {k: sort_keys(x[k]) for k in sorted(x)}
    if isinstance(x, list):
        return [sort_keys(v) for v in x]
    return x


class FixedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.fromtimestamp(NOW_UNIX, tz=timezone.utc).replace(tzinfo=None)


def render(template, bos, eos, messages, add_generation_prompt, extra):
    kwargs = dict(extra or {})
    tools = kwargs.pop("tools", None)
    chat = [{k: v for k, v in m.items() if v is not None} for m in copy.deepcopy(messages)]
    rendered, _ = ctu.render_jinja_template(
        conversations=[chat],
        tools=tools,
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos,
        eos_token=eos,
        **kwargs,
    )
    return rendered[0]


def templates_dir() -> Path:
    if "LLAMA_CPP_DIR" in os.environ:
        base = Path(os.environ["LLAMA_CPP_DIR"])
    else:
        base = Path(subprocess.check_output(["bash", str(ROOT / "tools" / "fetch_llama_cpp_sdist.sh")],
                                            text=True).strip().splitlines()[-1])
    return base / "models" / "templates"


def smollm2_template():
    from gguf import GGUFReader

    path = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        subprocess.check_call(["bash", str(ROOT / "tools" / "fetch_smollm2.sh")], stdout=subprocess.DEVNULL)
    r = GGUFReader(str(path))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    bos = tokens[r.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[r.fields["tokenizer.ggml.eos_token_id"].contents()]
    return r.fields["tokenizer.chat_template"].contents(), bos, eos


def main() -> None:
    ctu.datetime = FixedDatetime  # strftime_now reads the module's `datetime` at call time
    tdir = templates_dir()
    sources = {name: ((tdir / f).read_text(encoding="utf-8"), bos, eos)
               for name, (f, bos, eos) in TEMPLATES.items()}
    sources["smollm2-gguf"] = smollm2_template()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (template, bos, eos) in sorted(sources.items()):
        cases = []
        for case_name, messages, agp, extra in CASES:
            # role, content, reasoning_content, tool_calls: the field order of our `Message`
            messages = [{k: sort_keys(m[k]) for k in ("role", "content", "reasoning_content", "tool_calls")
                         if k in m} for m in messages]
            extra = sort_keys(extra)
            case = {"name": case_name, "messages": messages, "add_generation_prompt": agp}
            if extra is not None:
                case["extra"] = extra
            try:
                case["expected"] = render(template, bos, eos, messages, agp, extra)
            except Exception as e:  # noqa: BLE001 - any template failure is a recorded outcome
                case["error"] = f"{type(e).__name__}: {e}"
            cases.append(case)
        doc = {"template": template, "bos_token": bos, "eos_token": eos, "now_unix": NOW_UNIX,
               "cases": cases}
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        errs = sum("error" in c for c in cases)
        print(f"{path.name}: {len(cases)} cases ({errs} expected errors)", file=sys.stderr)


if __name__ == "__main__":
    main()
