#!/usr/bin/env python3
"""Record llama.cpp's per-token log-probs and greedy ids for the block-quantized fixture GGUFs
(tests/fixtures/*/model.q8_0.gguf) into tests/fixtures/<name>/reference_llama_cpp.json.

Why: mixture, like llama.cpp, quantizes activations to int8 blocks before multiplying them with
block-quantized weights (Q8_0 activations for Q8_0 weights). transformers on the dequantized
weights (reference_lossy.json) keeps f32 activations, so for these files llama.cpp running the
same GGUF is the reference. llama.cpp cannot load the `deepseek2` fixture (it infers "Lite"
from a layer count of exactly 27 and otherwise requires q_lora_rank), so that one is skipped.

Needs: tools/build_llama_cpp.sh (builds libllama), `pip install diskcache numpy`, and the
environment tools/llama_cpp_logprobs.py documents (PYTHONPATH = sdist root,
LLAMA_CPP_LIB_PATH = folder with libllama.so). Run from the repository root:

    CACHE=${MIXTURE_CACHE:-$HOME/.cache/mixture}
    PYTHONPATH=$CACHE/llama_cpp_python-0.3.36 LLAMA_CPP_LIB_PATH=$CACHE/llama.cpp-build/bin \\
        python3 tools/make_llama_cpp_references.py
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SKIP = {"deepseek2"}  # llama.cpp refuses 2-layer DeepSeek-V2 without q_lora_rank


def run(model: Path, args: list[str]) -> dict:
    out = subprocess.check_output(
        [sys.executable, str(ROOT / "tools" / "llama_cpp_logprobs.py"), "--model", str(model), *args],
        stderr=subprocess.DEVNULL,
    )
    return json.loads(out)


def main() -> None:
    for d in sorted(p for p in FIX.iterdir() if p.is_dir() and (p / "reference.json").exists()):
        if d.name in SKIP:
            continue
        ref = json.loads((d / "reference.json").read_text())
        result = {}
        for f in sorted(d.glob("model.q8_0.gguf")):
            ids = ",".join(map(str, ref["ids"]))
            lp = run(f, ["--ids", ids])
            prompt = ",".join(map(str, ref["greedy_prompt"]))
            greedy = run(f, ["--ids", prompt, "--greedy", str(len(ref["greedy_ids"]))])
            result[f.name] = {
                "token_logprobs": lp["token_logprobs"],
                "greedy_ids": greedy["new_ids"],
            }
            print(d.name, f.name, "ok")
        if result:
            (d / "reference_llama_cpp.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
