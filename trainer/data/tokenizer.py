"""A BERT-style WordPiece tokenizer, trained on the training captions, cached, deterministic.

The pieces are HuggingFace ``tokenizers`` (BertNormalizer lowercasing, BertPreTokenizer,
WordPiece model, "[CLS] $A [SEP]" template) wrapped as a ``PreTrainedTokenizerFast``. The
vocabulary, however, is learned here and not by ``tokenizers.trainers.WordPieceTrainer``:
that trainer breaks ties between equally frequent merges in hash-map order, which is random
per process, so two runs on the same captions give different vocabularies and token ids (and
a trial could not be reproduced from its config). ``learn_vocab`` runs the same algorithm
(BPE-style merges with a "##" continuation prefix) with ties broken by the pieces themselves.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from trainer.data.cache import atomic_write

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Fixed ids 0..4: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4."""
PREFIX = "##"
TOKENIZER_VERSION = 1


def _normalizer() -> normalizers.Normalizer:
    return normalizers.BertNormalizer(lowercase=True)


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """Words as the tokenizer will see them (normalised and pre-tokenised), with counts."""
    norm, pre = _normalizer(), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text, n in Counter(texts).items():
        for word, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            counts[word] += n
    return counts


def learn_vocab(counts: Counter[str], vocab_size: int) -> list[str]:
    """WordPiece vocabulary: specials, every character (word-initial and ``##`` forms), then
    the most frequent merges of adjacent pieces until ``vocab_size`` or nothing is left.
    Ties go to the lexicographically smallest pair, so the result is a function of
    ``counts`` alone."""
    words = sorted(counts.items())
    symbols = [[w[0]] + [PREFIX + c for c in w[1:]] for w, _ in words]
    freq = [c for _, c in words]
    alphabet: Counter[str] = Counter()
    for syms, f in zip(symbols, freq, strict=True):
        for s in syms:
            alphabet[s] += f
    vocab = list(SPECIAL_TOKENS) + sorted(alphabet, key=lambda s: (-alphabet[s], s))
    known = set(vocab)
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, (syms, f) in enumerate(zip(symbols, freq, strict=True)):
        for p in zip(syms, syms[1:], strict=False):
            pairs[p] += f
            where.setdefault(p, set()).add(i)
    heap = [(-c, a, b) for (a, b), c in pairs.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < vocab_size:
        neg, a, b = heapq.heappop(heap)
        if pairs.get((a, b), 0) != -neg or neg == 0:
            continue  # stale entry
        merged = a + b[len(PREFIX):]
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop((a, b), ())):
            syms, f = symbols[i], freq[i]
            for p in zip(syms, syms[1:], strict=False):
                pairs[p] -= f
                touched.add(p)
            out, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and syms[k] == a and syms[k + 1] == b:
                    out.append(merged)
                    k += 2
                else:
                    out.append(syms[k])
                    k += 1
            symbols[i] = out
            for p in zip(out, out[1:], strict=False):
                pairs[p] += f
                where.setdefault(p, set()).add(i)
                touched.add(p)
        pairs.pop((a, b), None)
        for p in sorted(touched):
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], *p))
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


def build_tokenizer(vocab: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(
        vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
        continuing_subword_prefix=PREFIX, max_input_chars_per_word=100,
    ))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=PREFIX)
    _add_template(tok)
    return tok


def _add_template(tok: Tokenizer) -> None:
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def tokenizer_cache_path(directory: Path, captions: list[str], vocab_size: int) -> Path:
    h = hashlib.sha256(f"v{TOKENIZER_VERSION}|{vocab_size}|".encode())
    for c in captions:
        h.update(c.encode())
        h.update(b"\n")
    return directory / f"tokenizer-{h.hexdigest()[:16]}.json"


def train_tokenizer(
    captions: list[str], vocab_size: int, cache_dir: Path | None = None
) -> PreTrainedTokenizerFast:
    """Learn (or load from ``cache_dir``) the WordPiece tokenizer of ``captions``."""
    path = tokenizer_cache_path(cache_dir, captions, vocab_size) if cache_dir else None
    if path is not None and path.exists():
        try:
            return wrap(Tokenizer.from_file(str(path)))
        except Exception:  # a corrupt cache file is rebuilt, never fatal
            pass
    tok = build_tokenizer(learn_vocab(word_counts(captions), vocab_size))
    if path is not None:
        blob = tok.to_str().encode()
        atomic_write(path, lambda fh: fh.write(blob))
    return wrap(tok)


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """A ``tokenizer.json`` file or a local HuggingFace tokenizer folder (no downloads)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"data.tokenizer_path: {path!r} does not exist")
    out: PreTrainedTokenizerBase  # a fast tokenizer is checked for below
    try:
        if p.is_file():
            tok = Tokenizer.from_file(str(p))
            if tok.post_processor is None and tok.token_to_id("[CLS]") is not None:
                _add_template(tok)
            out = wrap(tok)
        else:
            out = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as err:  # any loader failure is reported against the field
        raise ValueError(f"data.tokenizer_path: cannot load a tokenizer from {path!r}: {err}") \
            from err
    if not isinstance(out, PreTrainedTokenizerFast):
        raise ValueError(f"data.tokenizer_path: {path!r} is not a fast tokenizer")
    missing = [n for n in ("pad_token", "cls_token", "sep_token", "mask_token", "unk_token")
               if getattr(out, n) is None]
    if missing:
        raise ValueError(f"data.tokenizer_path: {path!r} lacks {', '.join(missing)}")
    return out
