#!/usr/bin/env python3
"""Record what Hugging Face `tokenizers` (Python) makes of a few texts with each tiny fixture's
tokenizer.json, as test vectors for `crates/model/tests/tokenizer_hf.rs`.

Writes tests/fixtures/tokenizer/hf_vectors.json:

    {"tokenizers": version, "fixtures": {name: [{"text", "ids", "ids_add_special",
     "ids_no_parse_special", "decoded"}]}}

- ids: encode(text, add_special_tokens=False).ids
- ids_add_special: encode(text, add_special_tokens=True).ids (the post-processor's BOS/EOS)
- ids_no_parse_special: the same as ids with `encode_special_tokens = True` (special tokens
  written in the text are tokenized as plain text)
- decoded: decode(ids, skip_special_tokens=False)

Needs the Python `tokenizers` package (installed with transformers). Run from the repository
root: python3 tools/make_tokenizer_fixtures.py
"""
import json
import os

import tokenizers

# All six tiny fixtures share one tokenizer.json (byte-level BPE, 288 tokens); llama stands for them.
FIXTURES = ["llama"]
TEXTS = [
    "",
    "Hello world",
    " the experts and the tokens",
    "<|bos|>the experts<|eos|>",
    "tabs\tand\nnewlines\n\n  two spaces",
    "naïve café 😀 — 東京 1234567",
    "it's we're they'll I'd",
]


def main():
    out = {"tokenizers": tokenizers.__version__, "texts": TEXTS, "fixtures": {}}
    for name in FIXTURES:
        path = os.path.join("tests", "fixtures", name, "hf", "tokenizer.json")
        tok = tokenizers.Tokenizer.from_file(path)
        plain = tokenizers.Tokenizer.from_file(path)
        plain.encode_special_tokens = True
        cases = []
        for text in TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({
                "text": text,
                "ids": ids,
                "ids_add_special": tok.encode(text, add_special_tokens=True).ids,
                "ids_no_parse_special": plain.encode(text, add_special_tokens=False).ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
            })
        out["fixtures"][name] = cases
    dest = os.path.join("tests", "fixtures", "tokenizer", "hf_vectors.json")
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(dest)


if __name__ == "__main__":
    main()
