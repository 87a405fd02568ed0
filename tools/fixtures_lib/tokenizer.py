"""A tiny, deterministic GPT-2-style byte-level BPE tokenizer for the fixtures.

Vocabulary: the 256 byte tokens (GPT-2's byte-to-unicode alphabet, ids 0..255 in byte order),
then merges learned greedily from a fixed corpus, then two special tokens <|bos|> and <|eos|>
(the last two ids). Pre-tokenizer and decoder: GPT-2 ByteLevel (its regex), so the GGUF's
`tokenizer.ggml.pre = "gpt-2"` describes it exactly.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

N_SPECIAL = 2
SPECIALS = ["<|bos|>", "<|eos|>"]
CORPUS = (
    "the quick brown fox jumps over the lazy dog. the cat sat on the mat. "
    "mixture of experts routes each token to the experts with the highest scores; "
    "the attention heads read the cache and the model writes the next token. "
    "in the beginning there was the word, and then there were the weights."
)


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def learn_merges(n_merges: int) -> list[tuple[str, str]]:
    from tokenizers import pre_tokenizers
    b2u = bytes_to_unicode()
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = Counter(w for w, _ in pre.pre_tokenize_str(CORPUS))
    seqs = {w: list(w) for w in words}
    assert all(c in b2u.values() for w in words for c in w)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter = Counter()
        for w, c in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, ties by text
        merges.append(best)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def write_tokenizer(dir_: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = learn_merges(vocab_size - 256 - N_SPECIAL)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    assert len(vocab) == vocab_size - N_SPECIAL, (len(vocab), vocab_size)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0],
                                   eos_token=SPECIALS[1], model_max_length=256)
    fast.save_pretrained(dir_)
    # AutoTokenizer picks a class from config.json's model_type (e.g. Qwen2Tokenizer), which
    # would invent an "<|endoftext|>" unk token; name every special explicitly.
    p = dir_ / "tokenizer_config.json"
    cfg = json.loads(p.read_text())
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", unk_token=None, pad_token=SPECIALS[1])
    p.write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    assert fast.convert_tokens_to_ids(SPECIALS) == [vocab_size - 2, vocab_size - 1]
