"""Run llama.cpp's convert_hf_to_gguf.py with one patch: the BPE pre-tokenizer name.

The converter identifies a GPT-2-style BPE tokenizer's pre-tokenizer by hashing the token ids of
a test string and refuses unknown hashes. The fixtures' tiny tokenizers use exactly GPT-2's
byte-level pre-tokenizer, so we answer "gpt-2" (what the converter would write for GPT-2 itself)
instead of failing. Everything else — hyper-parameters, tensor names, permutations, expert
merging, MLA splits, quantization — is the unmodified converter.

Usage (the environment variable LLAMA_CPP_DIR names llama.cpp's source root):
    LLAMA_CPP_DIR=... python3 tools/fixtures_lib/convert.py HF_DIR --outtype f32 --outfile X.gguf
"""
import os
import runpy
import sys
from pathlib import Path

root = Path(os.environ["LLAMA_CPP_DIR"]).resolve()
sys.path.insert(0, str(root))
sys.path.insert(1, str(root / "gguf-py"))

from conversion import base  # noqa: E402  (llama.cpp's conversion package)

PRE = os.environ.get("FIXTURE_TOKENIZER_PRE", "gpt-2")


def _pre(self, tokenizer) -> str:  # replaces TextModel.get_vocab_base_pre
    return PRE


base.TextModel.get_vocab_base_pre = _pre
sys.argv[0] = str(root / "convert_hf_to_gguf.py")
runpy.run_path(str(root / "convert_hf_to_gguf.py"), run_name="__main__")
