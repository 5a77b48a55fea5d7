#!/usr/bin/env python3
"""Generates the text-side fixtures of the Flux pipeline (tests/fixtures/text/).

There is no `transformers` package on Debian 12, so this script re-states, in
plain torch, what these files of huggingface/transformers do (read at commit
01f287b3d817b48b7bf61c408b269e3c93a24c97):

  models/clip/tokenization_clip.py   CLIPTokenizer (the path without ftfy:
                                      BasicTokenizer(strip_accents=False,
                                      do_split_on_punc=False), then the
                                      pre-tokenizer regex, byte-level BPE)
  tokenization_utils.py              _is_control / _is_whitespace, added
                                      special tokens split off before _tokenize
  models/clip/modeling_clip.py       CLIPTextModel (pre-LN, causal mask,
                                      quick_gelu, pooled output at the eos)
  models/t5/modeling_t5.py           T5EncoderModel (relative position
                                      buckets from block 0, T5LayerNorm,
                                      gated-gelu with gelu_new)
and, for the T5 tokenizer, calls Debian's python3-sentencepiece (the same
library version, 0.1.97, as libsentencepiece-dev) the way T5Tokenizer does:
pieces of the text, then </s> (id 1); pad 0.

Needs: /usr/bin/python3 (Debian's torch 1.13) with python3-regex and
python3-sentencepiece. The tests themselves need no Python.

Vocabularies: no real CLIP or T5 vocabulary can be shipped or fetched, so
both are small ones learned here from scripts/reference/text_corpus.txt:
  * CLIP: vocab.json laid out as OpenAI's CLIP builds it (256 byte symbols,
    the same with </w>, one token per merge, <|startoftext|>, <|endoftext|>
    last, so that the eos has the highest id as in the real vocabulary) and
    merges.txt ("#version: 0.2" then one merge a line). Merges: 200 rounds of
    "merge the most frequent adjacent pair" over the corpus' pre-tokenized
    words, ties to the smallest pair (by code points). spdit's own writer
    (text/vocab_writers) must reproduce these files exactly.
  * T5: a unigram spiece.model of 128 pieces trained by sentencepiece with
    T5's special ids (pad 0, eos 1, unk 2, no bos) and nmt_nfkc normalization.

Models (random weights, torch.Generator seeded 20251125, N(0, 1) * scale):
  CLIP text: vocab = the CLIP vocabulary's size, hidden 32, intermediate 64,
    4 heads, 2 layers, 77 positions, quick_gelu, eps 1e-5, eos_token_id 2 (the
    legacy value Flux's config.json has). Stored F32. Pooled with that config
    and with eos_token_id = <|endoftext|>'s id; also the whole model in BF16.
  T5 v1.1 encoder: vocab 192, d_model 32, d_kv 8, 4 heads, d_ff 48, 2 layers,
    32 buckets, max distance 20 (so that 40 tokens reach the clamped bucket),
    eps 1e-6, gated-gelu. Weights rounded to bfloat16 and stored BF16 in two
    shards with model.safetensors.index.json, as Flux ships text_encoder_2;
    the reference runs in float32 (attention scores in float64) on those values,
    and once more in BF16 as transformers runs Flux's T5.

Usage: /usr/bin/python3 scripts/reference/text_encoders_reference.py --out tests/fixtures/text
"""
import argparse
import json
import math
import os
import sys
import unicodedata

import regex
import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import write_safetensors  # noqa: E402

SEED = 20251125
HERE = os.path.dirname(os.path.abspath(__file__))
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

PROMPTS = [
    "a red fox in the snow",
    "A photo of a Cat, sitting on the mat!!! It's 3:45pm... #nofilter (really) \"quoted\" & co.",
    "Caf\u00e9 d\u00e9j\u00e0 vu \u2014 na\u00efve r\u00e9sum\u00e9; \u6771\u4eac\u30bf\u30ef\u30fc at night, "
    "\u039f\u0394\u039f\u03a3 \u0130stanbul STRASSE stra\u00dfe \u00f1 \U0001F98A 12345",
    "  tabs\tand\nnewlines\r\n and\u00a0nbsp\u200b zero-width\u0000 nul \ufffd replacement  ",
    "e\u0301cole (decomposed) vs \u00e9cole (composed); I'll, we've, you're, don't, she'd, he's",
    "<|startoftext|>hello<|endoftext|> world",
    "",
    " ".join(["the quick brown fox jumps over the lazy dog, in a field of flowers at sunrise."] * 6),
]

# ---------------------------------------------------------------- CLIP tokenizer


def byte_symbols():
    """byte -> printable character, as GPT-2 / CLIP map bytes (printable
    Latin-1 stays itself, the rest move to 256 + n in byte order)."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_SYMBOL = byte_symbols()
SYMBOL_BYTE = {v: k for k, v in BYTE_SYMBOL.items()}
PRETOKENIZE = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


def is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_cjk(cp):
    return any(a <= cp <= b for a, b in [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                         (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                         (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)])


def basic_clean(text):
    """BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize,
    joined with spaces: drop NUL, U+FFFD and controls, whitespace -> space,
    spaces around CJK ideographs, NFC, split on whitespace, lower-case."""
    out = []
    for c in text:
        if ord(c) == 0 or ord(c) == 0xFFFD or is_control(c):
            continue
        out.append(" " if is_whitespace(c) else c)
    text = "".join(f" {c} " if is_cjk(ord(c)) else c for c in out)
    words = unicodedata.normalize("NFC", text).split()
    return " ".join(w.lower() for w in words)


def bpe_word(symbols_of_word, ranks):
    """Merges the lowest-ranked adjacent pair everywhere, left to right, until none is ranked."""
    word = list(symbols_of_word)
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, math.inf))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                merged.append(best[0] + best[1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


def word_symbols(piece):
    chars = [BYTE_SYMBOL[b] for b in piece.encode("utf-8")]
    chars[-1] += "</w>"
    return chars


def pre_tokenize(text):
    return PRETOKENIZE.findall(basic_clean(text))


class ClipTokenizer:
    def __init__(self, vocab, merges, pad_token):
        self.vocab = vocab
        self.inverse = {v: k for k, v in vocab.items()}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.pad_id = vocab[pad_token]

    def tokenize(self, text):
        # Special tokens written in the text are split off first and kept whole.
        tokens = []
        for part in regex.split(r"(<\|startoftext\|>|<\|endoftext\|>)", text):
            if part in (BOS, EOS):
                tokens.append(part)
                continue
            for piece in pre_tokenize(part):
                if piece in (BOS, EOS):
                    tokens.append(piece)
                else:
                    tokens.extend(bpe_word(word_symbols(piece), self.ranks))
        return tokens

    def ids(self, text):
        # An unknown token becomes the unk token, <|endoftext|>.
        return [self.vocab.get(t, self.vocab[EOS]) for t in self.tokenize(text)]

    def call(self, text, max_length=77):
        """padding="max_length", truncation=True; returns ids and the removed text Flux's pipeline warns of."""
        body = self.ids(text)
        kept = body[:max_length - 2]
        ids = [self.vocab[BOS]] + kept + [self.vocab[EOS]]
        ids += [self.pad_id] * (max_length - len(ids))
        return ids, self.convert_to_string(body[max_length - 2:])

    def convert_to_string(self, ids):
        # convert_tokens_to_string: bytes back, decoded with errors="replace", then </w> -> " ", strip.
        data = bytearray(SYMBOL_BYTE[c] for c in "".join(self.inverse[i] for i in ids))
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()


def learn_clip_vocab(corpus, rounds):
    counts = {}
    for line in corpus.splitlines():
        for piece in pre_tokenize(line):
            key = tuple(word_symbols(piece))
            counts[key] = counts.get(key, 0) + 1
    merges = []
    words = dict(counts)
    for _ in range(rounds):
        pairs = {}
        for w, n in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] = pairs.get((w[i], w[i + 1]), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new_words = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + n
        words = new_words
    symbols = [BYTE_SYMBOL[b] for b in range(256)]
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {}
    for t in tokens:  # a merge may rebuild a token already there; the first id stays
        vocab.setdefault(t, len(vocab))
    return vocab, merges


# ---------------------------------------------------------------- CLIP text model


def randn(gen, shape, scale):
    return torch.randn(*shape, generator=gen) * scale


def clip_weights(gen, c):
    w = {}
    h, f = c["hidden_size"], c["intermediate_size"]
    w["text_model.embeddings.token_embedding.weight"] = randn(gen, (c["vocab_size"], h), 0.5)
    w["text_model.embeddings.position_embedding.weight"] = randn(gen, (c["max_position_embeddings"], h), 0.5)
    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}."
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            # Small q / k: a softmax far from one-hot, so that BF16 rounding is not amplified.
            w[p + f"self_attn.{proj}.weight"] = randn(gen, (h, h), 0.15 if proj in ("q_proj", "k_proj") else 0.3)
            w[p + f"self_attn.{proj}.bias"] = randn(gen, (h,), 0.1)
        for ln in ["layer_norm1", "layer_norm2"]:
            w[p + f"{ln}.weight"] = 1 + randn(gen, (h,), 0.1)
            w[p + f"{ln}.bias"] = randn(gen, (h,), 0.1)
        w[p + "mlp.fc1.weight"] = randn(gen, (f, h), 0.3)
        w[p + "mlp.fc1.bias"] = randn(gen, (f,), 0.1)
        w[p + "mlp.fc2.weight"] = randn(gen, (h, f), 0.2)
        w[p + "mlp.fc2.bias"] = randn(gen, (h,), 0.1)
    w["text_model.final_layer_norm.weight"] = 1 + randn(gen, (h,), 0.1)
    w["text_model.final_layer_norm.bias"] = randn(gen, (h,), 0.1)
    return w


def clip_forward(w, c, ids):
    """last_hidden_state of CLIPTextModel (float64 throughout for a sharp reference)."""
    w = {k: v.double() for k, v in w.items()}
    b, s = ids.shape
    h, heads, eps = c["hidden_size"], c["num_attention_heads"], c["layer_norm_eps"]
    d = h // heads
    x = w["text_model.embeddings.token_embedding.weight"][ids] + \
        w["text_model.embeddings.position_embedding.weight"][:s][None]
    causal = torch.full((s, s), -math.inf, dtype=torch.float64).triu(1)

    def ln(t, name):
        return torch.nn.functional.layer_norm(t, (h,), w[name + ".weight"], w[name + ".bias"], eps)

    def lin(t, name):
        return t @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}."
        y = ln(x, p + "layer_norm1")
        q = lin(y, p + "self_attn.q_proj").view(b, s, heads, d).transpose(1, 2) * d ** -0.5
        k = lin(y, p + "self_attn.k_proj").view(b, s, heads, d).transpose(1, 2)
        v = lin(y, p + "self_attn.v_proj").view(b, s, heads, d).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) + causal, dim=-1) @ v
        x = x + lin(a.transpose(1, 2).reshape(b, s, h), p + "self_attn.out_proj")
        y = lin(ln(x, p + "layer_norm2"), p + "mlp.fc1")
        y = y * torch.sigmoid(1.702 * y)  # quick_gelu
        x = x + lin(y, p + "mlp.fc2")
    return ln(x, "text_model.final_layer_norm")


def clip_pooled(last, ids, eos_token_id):
    """Where CLIPTextTransformer pools today: at the argmax of the ids when every
    sequence's highest id is 49407 (the real vocabulary's <|endoftext|>), else at
    the first token equal to config.eos_token_id. (Older transformers tested
    eos_token_id == 2 instead; both agree on real CLIP vocabularies.)"""
    rows = torch.arange(ids.shape[0])
    if bool((ids.max(dim=-1).values == 49407).all()):
        at = ids.argmax(dim=-1)
    else:
        at = (ids == eos_token_id).int().argmax(dim=-1)
    return last[rows, at]


def clip_forward_bf16(w, c, ids):
    """CLIPTextModel with BF16 weights as transformers runs it (eager
    attention): every op in BF16, LayerNorm and softmax computed in float32."""
    w = {k: v.to(torch.bfloat16) for k, v in w.items()}
    b, s = ids.shape
    h, heads, eps = c["hidden_size"], c["num_attention_heads"], c["layer_norm_eps"]
    d = h // heads
    x = w["text_model.embeddings.token_embedding.weight"][ids] + \
        w["text_model.embeddings.position_embedding.weight"][:s][None]
    causal = torch.full((s, s), torch.finfo(torch.bfloat16).min, dtype=torch.bfloat16).triu(1)

    def ln(t, name):
        return torch.nn.functional.layer_norm(t, (h,), w[name + ".weight"], w[name + ".bias"], eps)

    def lin(t, name):
        return torch.nn.functional.linear(t, w[name + ".weight"], w[name + ".bias"])

    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}."
        y = ln(x, p + "layer_norm1")
        q, k, v = (lin(y, p + f"self_attn.{n}_proj").view(b, s, heads, d).transpose(1, 2) for n in "qkv")
        scores = torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5 + causal
        a = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(torch.bfloat16), v)
        x = x + lin(a.transpose(1, 2).reshape(b, s, h), p + "self_attn.out_proj")
        y = lin(ln(x, p + "layer_norm2"), p + "mlp.fc1")
        y = y * torch.sigmoid(1.702 * y)
        x = x + lin(y, p + "mlp.fc2")
    return ln(x, "text_model.final_layer_norm")


# ---------------------------------------------------------------- T5 encoder


def t5_weights(gen, c):
    w = {}
    dm, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
    w["shared.weight"] = randn(gen, (c["vocab_size"], dm), 1.0)
    w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = \
        randn(gen, (c["relative_attention_num_buckets"], c["num_heads"]), 1.0)
    for i in range(c["num_layers"]):
        p = f"encoder.block.{i}."
        w[p + "layer.0.layer_norm.weight"] = 1 + randn(gen, (dm,), 0.1)
        for n in "qkv":
            # T5 does not scale its scores: small q / k keep the softmax away from one-hot.
            w[p + f"layer.0.SelfAttention.{n}.weight"] = randn(gen, (inner, dm), 0.1 if n != "v" else 0.3)
        w[p + "layer.0.SelfAttention.o.weight"] = randn(gen, (dm, inner), 0.3)
        w[p + "layer.1.layer_norm.weight"] = 1 + randn(gen, (dm,), 0.1)
        w[p + "layer.1.DenseReluDense.wi_0.weight"] = randn(gen, (ff, dm), 0.3)
        w[p + "layer.1.DenseReluDense.wi_1.weight"] = randn(gen, (ff, dm), 0.3)
        w[p + "layer.1.DenseReluDense.wo.weight"] = randn(gen, (dm, ff), 0.3)
    w["encoder.final_layer_norm.weight"] = 1 + randn(gen, (dm,), 0.1)
    return w


def t5_buckets(q_len, k_len, num_buckets, max_distance):
    """Bidirectional relative position buckets (key position - query position)."""
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    n = rel.abs()
    max_exact = half // 2
    large = max_exact + (torch.log(n.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).long()
    large = large.clamp(max=half - 1)
    return bucket + torch.where(n < max_exact, n, large)


def t5_forward(w, c, ids, mask=None):
    w = {k: v.float() for k, v in w.items()}
    b, s = ids.shape
    heads, dk, eps = c["num_heads"], c["d_kv"], c["layer_norm_epsilon"]

    def rms(t, name):
        return w[name] * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps))

    def gelu_new(t):
        return 0.5 * t * (1 + torch.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t.pow(3))))

    x = w["shared.weight"][ids]
    buckets = t5_buckets(s, s, c["relative_attention_num_buckets"], c["relative_attention_max_distance"])
    bias = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][buckets]
    bias = bias.permute(2, 0, 1)[None].double()
    if mask is not None:
        bias = bias + (1 - mask[:, None, None, :].double()) * torch.finfo(torch.float32).min
    for i in range(c["num_layers"]):
        p = f"encoder.block.{i}.layer."
        y = rms(x, p + "0.layer_norm.weight")
        q, k, v = (y @ w[p + f"0.SelfAttention.{n}.weight"].T for n in "qkv")
        q, k, v = (t.view(b, s, heads, dk).transpose(1, 2).double() for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v  # no 1/sqrt(d) in T5
        x = x + a.float().transpose(1, 2).reshape(b, s, heads * dk) @ w[p + "0.SelfAttention.o.weight"].T
        y = rms(x, p + "1.layer_norm.weight")
        g = gelu_new(y @ w[p + "1.DenseReluDense.wi_0.weight"].T) * (y @ w[p + "1.DenseReluDense.wi_1.weight"].T)
        x = x + g @ w[p + "1.DenseReluDense.wo.weight"].T
    return rms(x, "encoder.final_layer_norm.weight")


def t5_forward_bf16(w, c, ids, mask=None):
    """T5EncoderModel with BF16 weights as transformers runs Flux's T5: BF16
    activations, T5LayerNorm's mean of squares in float32 (cast to BF16 before
    the scale), softmax in float32, NewGELUActivation op by op in BF16."""
    bf = torch.bfloat16
    w = {k: v.to(bf) for k, v in w.items()}
    b, s = ids.shape
    heads, dk, eps = c["num_heads"], c["d_kv"], c["layer_norm_epsilon"]

    def rms(t, name):
        variance = t.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return w[name] * (t * torch.rsqrt(variance + eps)).to(bf)

    def gelu_new(t):
        return 0.5 * t * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (t + 0.044715 * torch.pow(t, 3.0))))

    def lin(t, name):
        return torch.nn.functional.linear(t, w[name])

    x = w["shared.weight"][ids]
    buckets = t5_buckets(s, s, c["relative_attention_num_buckets"], c["relative_attention_max_distance"])
    bias = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][buckets].permute(2, 0, 1)[None]
    if mask is not None:
        bias = bias + ((1 - mask[:, None, None, :].to(bf)) * torch.finfo(bf).min)
    for i in range(c["num_layers"]):
        p = f"encoder.block.{i}.layer."
        y = rms(x, p + "0.layer_norm.weight")
        q, k, v = (lin(y, p + f"0.SelfAttention.{n}.weight").view(b, s, heads, dk).transpose(1, 2) for n in "qkv")
        scores = torch.matmul(q, k.transpose(3, 2)) + bias
        a = torch.matmul(torch.softmax(scores.float(), dim=-1).type_as(scores), v)
        x = x + lin(a.transpose(1, 2).reshape(b, s, heads * dk), p + "0.SelfAttention.o.weight")
        y = rms(x, p + "1.layer_norm.weight")
        g = gelu_new(lin(y, p + "1.DenseReluDense.wi_0.weight")) * lin(y, p + "1.DenseReluDense.wi_1.weight")
        x = x + lin(g, p + "1.DenseReluDense.wo.weight")
    return rms(x, "encoder.final_layer_norm.weight")


# ---------------------------------------------------------------- main


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    gen = torch.Generator().manual_seed(SEED)
    with open(os.path.join(HERE, "text_corpus.txt"), encoding="utf-8") as f:
        corpus = f.read()

    # CLIP tokenizer files and ids.
    tok_dir = os.path.join(out, "clip_tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    vocab, merges = learn_clip_vocab(corpus, 200)
    write_json(os.path.join(tok_dir, "vocab.json"), vocab)
    with open(os.path.join(tok_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    write_json(os.path.join(tok_dir, "tokenizer_config.json"),
               {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": BOS,
                "eos_token": EOS, "unk_token": EOS, "pad_token": EOS, "do_lower_case": True})
    tok = ClipTokenizer(vocab, merges, EOS)
    clip_cases = []
    for p in PROMPTS:
        ids, removed = tok.call(p)
        clip_cases.append({"prompt": p, "tokens": tok.tokenize(p), "ids": ids, "truncated": removed})
    # A tokenizer padding with another token (as some CLIP releases pad with "!").
    tok_bang = ClipTokenizer(vocab, merges, "!")
    clip_cases.append({"prompt": PROMPTS[0], "pad_token": "!", "ids": tok_bang.call(PROMPTS[0])[0],
                       "tokens": tok_bang.tokenize(PROMPTS[0]), "truncated": ""})
    write_json(os.path.join(out, "clip_tokenizer_cases.json"), clip_cases)

    # T5 tokenizer: a small unigram model, T5's ids.
    t5_tok_dir = os.path.join(out, "t5_tokenizer")
    os.makedirs(t5_tok_dir, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus.splitlines()), model_prefix=os.path.join(t5_tok_dir, "spiece"),
        model_type="unigram", vocab_size=128, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc", num_threads=1, seed_sentencepiece_size=100000,
        minloglevel=2)
    os.remove(os.path.join(t5_tok_dir, "spiece.vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(t5_tok_dir, "spiece.model"))
    t5_cases = []
    for max_length in (40, 12):
        for p in PROMPTS:
            body = sp.encode(p)
            ids = body[:max_length - 1] + [1]
            ids += [0] * (max_length - len(ids))
            t5_cases.append({"prompt": p, "max_length": max_length, "ids": ids,
                             "truncated": sp.decode(body[max_length - 1:])})
    write_json(os.path.join(out, "t5_tokenizer_cases.json"), t5_cases)

    # CLIP text model on the tokenizer's ids of three prompts.
    clip_cfg = {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
                "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                "num_attention_heads": 4, "num_hidden_layers": 2, "max_position_embeddings": 77,
                "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2,
                "pad_token_id": 1, "projection_dim": 32, "torch_dtype": "float32"}
    clip_dir = os.path.join(out, "clip_text")
    os.makedirs(clip_dir, exist_ok=True)
    write_json(os.path.join(clip_dir, "config.json"), clip_cfg)
    cw = clip_weights(gen, clip_cfg)
    write_safetensors(os.path.join(clip_dir, "model.safetensors"), cw)
    ids = torch.tensor([tok.call(PROMPTS[i])[0] for i in (0, 1, 2)], dtype=torch.int64)
    last = clip_forward(cw, clip_cfg, ids)
    last_bf16 = clip_forward_bf16(cw, clip_cfg, ids)
    write_safetensors(os.path.join(out, "clip_text_io.safetensors"), {
        "input_ids": ids, "last_hidden_state": last.float(),
        "pooled_config_eos": clip_pooled(last, ids, clip_cfg["eos_token_id"]).float(),
        "pooled_eos": clip_pooled(last, ids, vocab[EOS]).float(),
        "last_hidden_state_bf16": last_bf16.float(),
        "pooled_eos_bf16": clip_pooled(last_bf16, ids, vocab[EOS]).float()})

    # T5 encoder on the tokenizer's ids (40 tokens), BF16 weights in two shards.
    t5_cfg = {"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": 192, "d_model": 32,
              "d_kv": 8, "d_ff": 48, "num_heads": 4, "num_layers": 2, "relative_attention_num_buckets": 32,
              "relative_attention_max_distance": 20, "feed_forward_proj": "gated-gelu",
              "dense_act_fn": "gelu_new", "is_gated_act": True, "layer_norm_epsilon": 1e-6,
              "torch_dtype": "bfloat16"}
    t5_dir = os.path.join(out, "t5_encoder")
    os.makedirs(t5_dir, exist_ok=True)
    write_json(os.path.join(t5_dir, "config.json"), t5_cfg)
    tw = {k: v.to(torch.bfloat16) for k, v in t5_weights(gen, t5_cfg).items()}
    names = sorted(tw)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(t5_dir, fname), {n: tw[n] for n in part})
        weight_map.update({n: fname for n in part})
    write_json(os.path.join(t5_dir, "model.safetensors.index.json"),
               {"metadata": {"total_size": sum(t.numel() * 2 for t in tw.values())}, "weight_map": weight_map})
    t5_ids = torch.tensor([c["ids"] for c in t5_cases if c["max_length"] == 40][:3], dtype=torch.int64)
    mask = (t5_ids != 0).to(torch.int64)
    mask[:, 0] = 1
    write_safetensors(os.path.join(out, "t5_encoder_io.safetensors"), {
        "input_ids": t5_ids, "attention_mask": mask,
        "last_hidden_state": t5_forward(tw, t5_cfg, t5_ids),
        "last_hidden_state_masked": t5_forward(tw, t5_cfg, t5_ids, mask),
        "last_hidden_state_bf16": t5_forward_bf16(tw, t5_cfg, t5_ids).float()})
    print("wrote", out)


if __name__ == "__main__":
    main()
