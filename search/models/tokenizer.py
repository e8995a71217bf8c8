"""CLIP's byte-pair tokenizer without torch: token ids as a numpy array.

The query path must not import open_clip (its package __init__ imports torch, seconds),
so this is open_clip's SimpleTokenizer (itself OpenAI's) with the default settings every
open_clip CLIP text tower uses — clean "lower", no reduction mask, no extra special
tokens — and the same vocabulary file, found inside the open_clip package without
importing it. tests/test_tokenizer.py holds the ids equal to open_clip's on many strings.
"""

from __future__ import annotations

import html
import importlib.util
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# The merges open_clip reads from the vocabulary file (49152 - 256 - 2 of them).
N_MERGES = 49152 - 256 - 2
SPECIAL = ("<start_of_text>", "<end_of_text>")
DEFAULT_CONTEXT_LENGTH = 77


def default_vocab() -> Path:
    """open_clip's vocabulary file, located without running open_clip/__init__.py."""
    spec = importlib.util.find_spec("open_clip")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        path = Path(location) / VOCAB_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{VOCAB_FILE} not found: is open_clip_torch installed?")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """Every byte to a printable character, so BPE never sees whitespace or controls."""
    shown = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    # The rest, in byte order, take the characters after 255 (this order numbers the vocabulary).
    hidden = [b for b in range(2**8) if b not in shown]
    return {b: chr(b) for b in shown} | {b: chr(2**8 + n) for n, b in enumerate(hidden)}


def _merge_lines(vocab: Path) -> list[str]:
    """The N_MERGES merge lines after the header. The file holds five times as many;
    decompressing and splitting only what is used saves most of the start-up."""
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    text = b""
    with open(vocab, "rb") as f:
        while text.count(b"\n") <= N_MERGES + 1:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            text += inflate.decompress(chunk)
    return text.decode("utf-8", errors="strict").split("\n", N_MERGES + 1)[1 : N_MERGES + 1]


def _clean(text: str) -> str:
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """tokenize(texts) → int64 (n, context_length), zero-padded, like open_clip's."""

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH):
        import regex

        lines = _merge_lines(default_vocab())
        # A merge is a line "first second"; pieces never hold a space (bytes_to_unicode
        # maps it away), so the line itself is the pair's key: no 49k tuples to build.
        units = list(bytes_to_unicode().values())
        vocab_list = units + [u + "</w>" for u in units]
        vocab_list += [line.replace(" ", "") for line in lines] + list(SPECIAL)
        self.encoder = {token: i for i, token in enumerate(vocab_list)}
        self.bpe_ranks = {line: i for i, line in enumerate(lines)}
        self.byte_encoder = bytes_to_unicode()
        self.cache = {t: t for t in SPECIAL}
        self.pattern = regex.compile(
            "|".join(SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.sot, self.eot = self.encoder[SPECIAL[0]], self.encoder[SPECIAL[1]]
        self.context_length = context_length

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = {f"{a} {b}" for a, b in zip(word, word[1:])}
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram.split(" ")
            # Every occurrence of the pair, left to right, becomes one piece.
            merged: list[str] = []
            i = 0
            while i < len(word):
                if word[i] == first and i + 1 < len(word) and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for token in self.pattern.findall(_clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return ids

    def __call__(self, texts: str | list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out
