#!/usr/bin/env python3
"""Reference log-probs and greedy continuations from llama.cpp, for our end-to-end tests.

Runs llama.cpp through the Python bindings shipped in the llama-cpp-python sdist, over a
llama.cpp built from the same sdist (no second compile):

    tools/fetch_llama_cpp_sdist.sh               # -> $CACHE/llama_cpp_python-0.3.36/vendor/llama.cpp
    tools/build_llama_cpp.sh                     # -> $CACHE/llama.cpp-build/bin (libllama.so, libggml*.so)
    python3 -m pip install diskcache numpy       # the bindings import both
    CACHE=${MIXTURE_CACHE:-$HOME/.cache/mixture}
    export PYTHONPATH=$CACHE/llama_cpp_python-0.3.36          # sdist root: holds llama_cpp/
    export LLAMA_CPP_LIB_PATH=$CACHE/llama.cpp-build/bin      # folder holding libllama.so

Modes (all print JSON to stdout, and to --out if given):

    # log p(ids[i] | ids[:i]) for i = 1..n-1, and perplexity = exp(-mean)
    tools/llama_cpp_logprobs.py --model M.gguf --ids 1,2,3,...
    # tokenize text with llama.cpp's own tokenizer first (BOS only with --add-bos)
    tools/llama_cpp_logprobs.py --model M.gguf --text "Some English."
    # greedy continuation (argmax of llama.cpp's logits, i.e. temperature 0) of N new tokens;
    # exactly N tokens, EOS included if it comes (no stop); prompt in one batch, then one token a step
    tools/llama_cpp_logprobs.py --model M.gguf --ids 1,2,3 --greedy 16

Settings chosen for comparisons (see notes in /work/shared/FIELD-NOTES.md): F32 KV cache
(type_k = type_v = 0; the default F16 cache moves per-token log-probs by up to ~3e-3), flash
attention off, 2 threads, logits for every position, the whole sequence in one batch.
Log-softmax is computed in float64 from llama.cpp's raw float32 logits.
"""

import argparse
import json
import os
import sys

import numpy as np

GGML_TYPE_F32 = 0


def log_softmax64(logits):
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def load(model, n_ctx, n_batch, threads):
    try:
        from llama_cpp import Llama
    except ImportError as e:
        sys.exit(
            f"cannot import llama_cpp ({e}); set PYTHONPATH to the llama-cpp-python sdist root "
            "and LLAMA_CPP_LIB_PATH to the folder holding libllama.so (see this file's docstring)"
        )
    return Llama(
        model_path=model,
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=n_batch,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
        flash_attn=False,
        n_gpu_layers=0,
        seed=0,
        verbose=False,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="GGUF file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ids", help="comma-separated token ids")
    src.add_argument("--text", help="text to tokenize with llama.cpp's tokenizer")
    p.add_argument("--add-bos", action="store_true", help="with --text: prepend BOS")
    p.add_argument("--special", action="store_true",
                   help="with --text: parse special tokens such as <|im_start|> (chat prompts)")
    p.add_argument("--greedy", type=int, default=0, metavar="N",
                   help="instead of log-probs: greedy continuation of N new tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args()

    # Tokenizing needs the model loaded; size the context after we know the length.
    if a.ids is not None:
        ids = [int(t) for t in a.ids.split(",") if t.strip()]
    else:
        tok = load(a.model, 512, 512, a.threads)
        ids = tok.tokenize(a.text.encode("utf-8"), add_bos=a.add_bos, special=a.special)
        del tok
    if not ids:
        sys.exit("no tokens")

    n_total = len(ids) + a.greedy
    n_ctx = max(512, n_total)
    n_batch = max(512, len(ids))
    llm = load(a.model, n_ctx, n_batch, a.threads)

    out = {"ids": ids}
    if a.text is not None:
        out["text"] = a.text
        out["add_bos"] = a.add_bos
        out["special"] = a.special
    llm.eval(ids)  # one batch: n_batch >= len(ids)

    if a.greedy == 0:
        if len(ids) < 2:
            sys.exit("need at least 2 tokens for log-probs")
        logits = np.array(llm.scores[: len(ids) - 1, :], dtype=np.float32)
        lp = log_softmax64(logits)
        token_logprobs = [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]
        out["token_logprobs"] = token_logprobs
        out["perplexity"] = float(np.exp(-np.mean(token_logprobs)))
    else:
        new, chosen_lp, margins = [], [], []
        for step in range(a.greedy):
            row = np.array(llm.scores[llm.n_tokens - 1, :], dtype=np.float32)
            order = np.argsort(-row.astype(np.float64), kind="stable")
            best = int(order[0])
            new.append(best)
            chosen_lp.append(float(log_softmax64(row)[best]))
            # logit gap to the runner-up: a tiny gap means a faithful engine may pick otherwise
            margins.append(float(row[order[0]]) - float(row[order[1]]))
            if step + 1 < a.greedy:
                llm.eval([best])
        out["new_ids"] = new
        out["new_logprobs"] = chosen_lp
        out["top2_logit_margin"] = margins
        out["new_text"] = llm.detokenize(new, prev_tokens=ids).decode("utf-8", "replace")

    s = json.dumps(out, indent=1)
    print(s)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(s + "\n")


if __name__ == "__main__":
    main()
