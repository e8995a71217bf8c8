"""search.models.tokenizer (no torch) gives open_clip's token ids, string for string."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from search.models.tokenizer import ClipTokenizer, default_vocab

SAMPLES = [
    "",
    " ",
    "a dog in the snow",
    "A DOG in the Snow!!!",
    "dog asleep on a red sofa",
    "it's what they'll've done, isn't it? I'd say we're fine",
    "2:cat +sofa -dog 3.14159 1,000,000 07/12/2024 #hashtag @user",
    "Ünïcödé façade — naïve café, crème brûlée",
    "東京の夜景 and 北京烤鸭 한국어 텍스트",
    "مرحبا بالعالم שלום עולם",
    "emoji 🐶🐱‍👤👨‍👩‍👧‍👦 🇫🇷 ❤️ 👍🏽",
    "html &amp; entities &lt;b&gt; &#39;quoted&#39; &amp;amp;",
    "mojibake: Ã©tÃ© cafÃ©",
    "tabs\tand\nnewlines\r\n  and   spaces ",
    "control\x00chars\x07here\x1b[31m red \x1b[0m",
    "curly “quotes” and ‘single’ ﬁ ligature",
    "e\u0301 combining acute and Å vs A\u030a",
    "!!!???...;;;:::,,,---___===+++***&&&%%%$$$###@@@",
    "<start_of_text> literal special tokens <end_of_text>",
    "x" * 500,
    " ".join(["word"] * 200),
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" + "\u200b" + "b zero width",
    "Ελληνικά κείμενα και русский текст",
]


def random_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        " \t\n.,;:!?'\"-_()[]{}<>/\\|@#$%^&*+=~`"
        "éèêëàâäôöûüçñßøåæœ漢字かなカナ한글😀🐕🏔️❄️"
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(n)]


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@pytest.mark.parametrize("context_length", [77, 32])
def test_ids_equal_open_clip(open_clip_tokenizer, context_length):
    ours = ClipTokenizer(context_length=context_length)
    texts = SAMPLES + random_strings(300)
    expected = open_clip_tokenizer(texts, context_length=context_length).numpy()
    got = ours(texts)
    assert got.dtype == np.int64
    mismatched = [t for t, a, b in zip(texts, got, expected) if not np.array_equal(a, b)]
    assert not mismatched, mismatched[:3]


def test_long_text_is_truncated_with_end_token(open_clip_tokenizer):
    ours = ClipTokenizer()
    row = ours("a dog " * 100)[0]
    assert row[0] == ours.sot and row[-1] == ours.eot
    assert np.array_equal(row, open_clip_tokenizer("a dog " * 100)[0].numpy())


def test_vocab_found_without_importing_torch():
    code = (
        "import sys; from search.models.tokenizer import ClipTokenizer, default_vocab; "
        "t = ClipTokenizer(); t(['a dog in the snow']); "
        "print('torch' in sys.modules, 'open_clip' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert default_vocab().name == "bpe_simple_vocab_16e6.txt.gz"
