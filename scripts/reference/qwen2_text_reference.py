#!/usr/bin/env python3
"""Generates the fixtures of Qwen-Image's text side (tests/fixtures/qwen2/).

There is no `transformers`, `tokenizers` or `diffusers` package on Debian 12,
so this script re-states, in plain torch and python3-regex, what these files
do (read at huggingface/transformers commit 00b676f8 and huggingface/diffusers
commit 06d92baf):

  transformers models/qwen2/tokenization_qwen2.py    Qwen2Tokenizer: NFC, the
      pre-tokenizer regex, byte-level BPE without an end-of-word suffix,
      added (special) tokens split off whole before the BPE
  transformers models/qwen2_5_vl/modeling_qwen2_5_vl.py   the text model of
      Qwen2_5_VLForConditionalGeneration: embed_tokens, decoder layers
      (Qwen2RMSNorm, attention with q/k/v bias and no o bias, grouped KV heads,
      multimodal RoPE, Qwen2MLP with SiLU), the final norm. position_ids from
      get_rope_index without images: cumsum(mask) - 1, 1 at padding, the same
      for the three streams. hidden_states[-1] of output_hidden_states=True is
      taken AFTER the final norm.
  diffusers pipelines/qwenimage/pipeline_qwenimage.py    _get_qwen_prompt_embeds:
      the template, tokenizer(max_length=1024 + 34, padding=True,
      truncation=True), hidden_states[-1], the rows the mask keeps, the first
      drop_idx = 34 of them dropped, zero-padded to the batch's longest, the
      mask of ones.

The multimodal RoPE is written out as transformers does it (three position
streams, the channel sections [t, h, w] picked from each); spdit computes
ordinary 1-D RoPE, which is the same when the three streams are equal (text).

Vocabulary: Qwen's real one (151k tokens) cannot be shipped, so a small one
is learned here, laid out as Qwen's: the 256 byte symbols in GPT-2's byte
order, then one token per merge, then the added tokens (<|endoftext|>,
<|im_start|>, <|im_end|>, ...) after them. Merges: 400 rounds of "merge the
most frequent adjacent pair" over the pre-tokenized words of
scripts/reference/text_corpus.txt and the template, ties to the smallest pair.
Written both as tokenizer.json (model.vocab, model.merges as "a b" strings,
added_tokens, as tokenizers serialises a Qwen2 tokenizer) and as vocab.json +
merges.txt + tokenizer_config.json (added_tokens_decoder), as the slow
tokenizer reads it.

Model (random weights, torch.Generator seeded 20251126): vocab = the
vocabulary above, hidden 64, 4 heads (head_dim 16), 2 KV heads, intermediate
96, 2 layers, rope_theta 1e6, mrope_section [2, 3, 3], rms eps 1e-6; stored F32
in transformers' current names (model.language_model.layers.N..., with one
vision tensor model.visual.* and lm_head.weight that a text encoder must not
read). Reference in float64 (exact) and, as transformers runs Qwen-Image's
text encoder, in BF16 (eager attention, softmax and RMS statistics in f32).

Usage: /usr/bin/python3 scripts/reference/qwen2_text_reference.py --out tests/fixtures/qwen2
"""
import argparse
import json
import math
import os
import sys
import unicodedata

import regex
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import write_safetensors  # noqa: E402

SEED = 20251126
HERE = os.path.dirname(os.path.abspath(__file__))

# tokenization_qwen2.PRETOKENIZE_REGEX
PRETOKENIZE = regex.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
         "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
         "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2.5-VL's tokenizer also has non-special added tokens (<tool_call>, ...).
ADDED_NOT_SPECIAL = ["<tool_call>", "</tool_call>"]

TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
            "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
            "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
DROP_IDX = 34
TOKENIZER_MAX_LENGTH = 1024

TOKENIZER_CASES = [
    "a red fox in the snow",
    "A photo of a Cat, sitting on the mat!!! It's 3:45pm... #nofilter (really) \"quoted\" & co.",
    "Caf\u00e9 d\u00e9j\u00e0 vu \u2014 na\u00efve r\u00e9sum\u00e9; \u6771\u4eac\u30bf\u30ef\u30fc at night, "
    "\u039f\u0394\u039f\u03a3 \u0130stanbul STRASSE stra\u00dfe \u00f1 \U0001F98A\U0001F468\u200d\U0001F469 12345",
    "  tabs\tand\nnewlines\r\n and\u00a0nbsp\u200b zero-width   trailing   \n\n  ",
    "e\u0301cole (decomposed) vs \u00e9cole (composed); I'll, we've, you're, don't, she'd, HE'S, I'M",
    "<|im_start|>user\nhello<|im_end|><|endoftext|> world <tool_call>x</tool_call><|im_start",
    "",
    "    leading spaces, 3.14159 and 1,000,000 and x2 and \u0663\u0664 (Arabic-Indic digits)",
    "\u751f\u6210\u4e00\u5f20\u795d\u5c0f\u660e\u751f\u65e5\u5feb\u4e50\u7684\u8d3a\u5361",
]

PROMPTS = [
    "a red fox in the snow",
    "A coffee shop entrance features a chalkboard sign reading \"Qwen Coffee \U0001F60A $2 per cup\".",
    " ",
]


# ---------------------------------------------------------------- tokenizer


def byte_symbols():
    """bytes_to_unicode of GPT-2 (and Qwen2): printable Latin-1 stays itself,
    the rest move to 256 + n in byte order."""
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


def gpt2_byte_order():
    """The order of bytes in GPT-2's / Qwen's vocabulary: printable ones first."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    return keep + [b for b in range(256) if b not in keep]


def word_symbols(piece):
    return [BYTE_SYMBOL[b] for b in piece.encode("utf-8")]


def bpe_word(symbols, ranks):
    """Qwen2Tokenizer.bpe: merge the lowest-ranked adjacent pair everywhere, left to right."""
    word = list(symbols)
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


def learn_merges(texts, rounds):
    counts = {}
    for text in texts:
        for piece in PRETOKENIZE.findall(unicodedata.normalize("NFC", text)):
            key = tuple(word_symbols(piece))
            counts[key] = counts.get(key, 0) + 1
    merges, words = [], dict(counts)
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
    return merges


class Qwen2Tokenizer:
    def __init__(self, vocab, merges, added):
        self.vocab = vocab
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.added = added  # content -> id
        self.split = regex.compile("(" + "|".join(regex.escape(t) for t in
                                                 sorted(added, key=len, reverse=True)) + ")")

    def tokenize(self, text):
        # PreTrainedTokenizer.tokenize: prepare_for_tokenization (NFC), then the
        # added tokens are split off whole (the trie: earliest, longest), then _tokenize.
        text = unicodedata.normalize("NFC", text)
        tokens = []
        for part in self.split.split(text):
            if part in self.added:
                tokens.append(part)
                continue
            for piece in PRETOKENIZE.findall(part):
                tokens.extend(bpe_word(word_symbols(piece), self.ranks))
        return tokens

    def ids(self, text):
        return [self.added[t] if t in self.added else self.vocab[t] for t in self.tokenize(text)]

    def decode(self, ids):
        inverse = {v: k for k, v in self.vocab.items()}
        inverse.update({v: k for k, v in self.added.items()})
        text = "".join(inverse[i] for i in ids)
        out, buf = [], bytearray()
        # convert_tokens_to_string: byte symbols back to bytes; added tokens as they are.
        i = 0
        while i < len(text):
            hit = next((t for t in self.added if text.startswith(t, i)), None)
            if hit:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                out.append(hit)
                i += len(hit)
            else:
                buf.append(SYMBOL_BYTE[text[i]])
                i += 1
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def batch(self, texts, max_length):
        """tokenizer(texts, max_length=..., padding=True, truncation=True): cut
        each to max_length, pad on the right with <|endoftext|> to the longest."""
        rows = [self.ids(t)[:max_length] for t in texts]
        longest = max(len(r) for r in rows)
        pad = self.added["<|endoftext|>"]
        ids = [r + [pad] * (longest - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (longest - len(r)) for r in rows]
        return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


def build_tokenizer():
    with open(os.path.join(HERE, "text_corpus.txt"), encoding="utf-8") as f:
        corpus = f.read()
    merges = learn_merges(corpus.splitlines() + [TEMPLATE.format(p) for p in PROMPTS], 400)
    vocab = {}
    for b in gpt2_byte_order():
        vocab[BYTE_SYMBOL[b]] = len(vocab)
    for a, b in merges:  # a merge may rebuild a token already there; the first id stays
        vocab.setdefault(a + b, len(vocab))
    added = {}
    for t in ADDED + ADDED_NOT_SPECIAL:
        added[t] = len(vocab) + len(added)
    return Qwen2Tokenizer(vocab, merges, added), merges


def write_tokenizer(tok, merges, folder):
    os.makedirs(folder, exist_ok=True)
    added_tokens = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                     "normalized": False, "special": t not in ADDED_NOT_SPECIAL}
                    for t, i in tok.added.items()]
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PRETOKENIZE.pattern}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": tok.vocab, "merges": [a + " " + b for a, b in merges]},
    }
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False, indent=1)
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(d["id"]): {k: v for k, v in d.items() if k != "id"} for d in added_tokens},
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "errors": "replace", "model_max_length": 131072,
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
    }
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(tok.vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")


# ---------------------------------------------------------------- the text model


def model_config(vocab_size):
    # Shaped like Qwen-Image's text_encoder/config.json (Qwen2_5_VLConfig), tiny.
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "hidden_act": "silu",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vocab_size": vocab_size,
        "max_position_embeddings": 128000,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "vision_config": {"depth": 1, "hidden_size": 8, "out_hidden_size": 64},
    }


def randn(gen, shape, scale):
    return torch.randn(*shape, generator=gen) * scale


def model_weights(gen, c):
    h, f = c["hidden_size"], c["intermediate_size"]
    d = h // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * d
    w = {"model.language_model.embed_tokens.weight": randn(gen, (c["vocab_size"], h), 1.0)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.language_model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + randn(gen, (h,), 0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + randn(gen, (h,), 0.1)
        w[p + "self_attn.q_proj.weight"] = randn(gen, (h, h), 0.12)
        w[p + "self_attn.q_proj.bias"] = randn(gen, (h,), 0.1)
        w[p + "self_attn.k_proj.weight"] = randn(gen, (kv, h), 0.12)
        w[p + "self_attn.k_proj.bias"] = randn(gen, (kv,), 0.1)
        w[p + "self_attn.v_proj.weight"] = randn(gen, (kv, h), 0.15)
        w[p + "self_attn.v_proj.bias"] = randn(gen, (kv,), 0.1)
        w[p + "self_attn.o_proj.weight"] = randn(gen, (h, h), 0.15)
        w[p + "mlp.gate_proj.weight"] = randn(gen, (f, h), 0.15)
        w[p + "mlp.up_proj.weight"] = randn(gen, (f, h), 0.15)
        w[p + "mlp.down_proj.weight"] = randn(gen, (h, f), 0.12)
    w["model.language_model.norm.weight"] = 1 + randn(gen, (h,), 0.1)
    # What Qwen-Image's text_encoder holds besides the text model; never read.
    w["model.visual.patch_embed.proj.weight"] = randn(gen, (8, 3, 2, 2, 2), 1.0)
    w["lm_head.weight"] = randn(gen, (16, h), 1.0)
    return w


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x, weight, eps):
    # Qwen2RMSNorm: statistics in f32, back to the input dtype, then the weight.
    dtype = x.dtype
    xf = x.to(torch.float32) if dtype != torch.float64 else x
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def text_model_forward(w, c, ids, mask, dtype):
    """hidden_states[-1] of Qwen2_5_VLForConditionalGeneration(input_ids, attention_mask,
    output_hidden_states=True): the text model's output after its final norm."""
    w = {k: v.to(dtype) for k, v in w.items() if k.startswith("model.language_model.")}
    P = "model.language_model."
    b, s = ids.shape
    h, heads, kvh, eps = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["rms_norm_eps"]
    d = h // heads
    x = w[P + "embed_tokens.weight"][ids]
    # get_rope_index, no images: cumsum of the mask - 1, 1 at padding; three equal streams.
    pos = mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(mask == 0, 1)
    pos3 = pos.unsqueeze(0).expand(3, -1, -1)
    # Qwen2_5_VLRotaryEmbedding (default rope: attention_scaling 1), freqs in f32 (f64 for the exact run).
    fdt = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).to(fdt) / d))
    freqs = (inv_freq[None, None, :, None].expand(3, b, -1, 1) @ pos3[:, :, None, :].to(fdt)).transpose(2, 3)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)  # (3, b, s, d)
    section = c["rope_scaling"]["mrope_section"] * 2
    cos = torch.cat([m[i % 3] for i, m in enumerate(cos.split(section, dim=-1))], dim=-1).unsqueeze(1)
    sin = torch.cat([m[i % 3] for i, m in enumerate(sin.split(section, dim=-1))], dim=-1).unsqueeze(1)
    # create_causal_mask + padding, as eager attention adds it: the dtype's min where masked.
    allowed = torch.ones(s, s, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    additive = torch.zeros(b, 1, s, s, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)

    def lin(t, name, bias=True):
        return torch.nn.functional.linear(t, w[name + ".weight"], w.get(name + ".bias") if bias else None)

    for i in range(c["num_hidden_layers"]):
        p = P + f"layers.{i}."
        y = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(y, p + "self_attn.q_proj").view(b, s, heads, d).transpose(1, 2)
        k = lin(y, p + "self_attn.k_proj").view(b, s, kvh, d).transpose(1, 2)
        v = lin(y, p + "self_attn.v_proj").view(b, s, kvh, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kvh, dim=1)
        v = v.repeat_interleave(heads // kvh, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * d ** -0.5 + additive
        sm_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        probs = torch.softmax(scores, dim=-1, dtype=sm_dtype).to(dtype)
        a = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, h)
        x = x + lin(a, p + "self_attn.o_proj", bias=False)
        y = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = lin(y, p + "mlp.gate_proj", bias=False)
        x = x + lin(torch.nn.functional.silu(g) * lin(y, p + "mlp.up_proj", bias=False), p + "mlp.down_proj",
                    bias=False)
    return rms_norm(x, w[P + "norm.weight"], eps)


def qwen_prompt_embeds(tok, w, c, prompts, dtype, max_length=TOKENIZER_MAX_LENGTH, drop_idx=DROP_IDX):
    """QwenImagePipeline._get_qwen_prompt_embeds."""
    txt = [TEMPLATE.format(p) for p in prompts]
    ids, mask = tok.batch(txt, max_length + drop_idx)
    hidden = text_model_forward(w, c, ids, mask, dtype)
    bool_mask = mask.bool()
    split = torch.split(hidden[bool_mask], bool_mask.sum(dim=1).tolist(), dim=0)
    split = [e[drop_idx:] for e in split]
    longest = max(e.size(0) for e in split)
    embeds = torch.stack([torch.cat([u, u.new_zeros(longest - u.size(0), u.size(1))]) for u in split])
    out_mask = torch.stack([torch.cat([torch.ones(u.size(0), dtype=torch.long),
                                       torch.zeros(longest - u.size(0), dtype=torch.long)]) for u in split])
    return embeds, out_mask, ids, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)

    tok, merges = build_tokenizer()
    write_tokenizer(tok, merges, os.path.join(out, "tokenizer"))
    cases = []
    for text in TOKENIZER_CASES + [TEMPLATE.format(p) for p in PROMPTS]:
        ids = tok.ids(text)
        cases.append({"text": text, "tokens": tok.tokenize(text), "ids": ids, "decoded": tok.decode(ids)})
    with open(os.path.join(out, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)

    c = model_config(len(tok.vocab) + len(tok.added))
    gen = torch.Generator().manual_seed(SEED)
    w = model_weights(gen, c)
    enc = os.path.join(out, "text_encoder")
    os.makedirs(enc, exist_ok=True)
    with open(os.path.join(enc, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    write_safetensors(os.path.join(enc, "model.safetensors"), w)

    io = {}
    # The text model alone: a batch of two id rows, the second right-padded.
    ids_a = tok.ids("a red fox in the snow, at night")
    ids_b = tok.ids("<|im_start|>user\nhello")
    s = max(len(ids_a), len(ids_b))
    pad = tok.added["<|endoftext|>"]
    ids = torch.tensor([ids_a + [pad] * (s - len(ids_a)), ids_b + [pad] * (s - len(ids_b))])
    mask = torch.tensor([[1] * len(ids_a) + [0] * (s - len(ids_a)), [1] * len(ids_b) + [0] * (s - len(ids_b))])
    io["model.input_ids"] = ids
    io["model.attention_mask"] = mask
    io["model.hidden_f64"] = text_model_forward(w, c, ids, mask, torch.float64)
    io["model.hidden_bf16"] = text_model_forward(w, c, ids, mask, torch.bfloat16)
    # The pipeline's prompt path: one prompt, a batch of three, and a cut one.
    for name, prompts, max_length in [("one", PROMPTS[:1], TOKENIZER_MAX_LENGTH),
                                      ("batch", PROMPTS, TOKENIZER_MAX_LENGTH),
                                      ("cut", PROMPTS[1:2], 12)]:
        e, m, tids, tmask = qwen_prompt_embeds(tok, w, c, prompts, torch.float64, max_length)
        io[f"{name}.prompt_embeds"] = e
        io[f"{name}.prompt_embeds_mask"] = m
        io[f"{name}.input_ids"] = tids
        io[f"{name}.attention_mask"] = tmask
    e, m, _, _ = qwen_prompt_embeds(tok, w, c, PROMPTS[1:2], torch.bfloat16)
    io["one_bf16.prompt_embeds"] = e
    write_safetensors(os.path.join(out, "qwen2_io.safetensors"), io,
                      metadata={"prompts": json.dumps(PROMPTS), "cut_max_length": 12})
    print("vocab", len(tok.vocab), "added", len(tok.added), "template tokens",
          len(tok.ids(TEMPLATE.format(""))))
    for k, v in io.items():
        print(k, tuple(v.shape), v.dtype)


if __name__ == "__main__":
    main()
