"""Dual vocabulary (seed-b "Hybrid Vocabulary System").

* STD: a fixed vocabulary shipped with the code. Every ``key=value`` pair gets an id in
  ONE shared table (key-aware ids), plus ``key=<unk>`` for unseen values of a known key.
* RE: a dynamic vocabulary. A new ``key=value`` term gets the next id the moment it is
  first seen, with no code change, and is appended to an on-disk log at once, so ids
  survive restarts. The log is JSON lines: a header line with the format version, then
  one ``{"id": n, "term": "..."}`` line per term, so growth is an O(1) append.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from schemas.attributes import FlatAttributes

PAD, UNK = 0, 1
_RESERVED = ("<pad>", "<unk>")
RE_VOCAB_FORMAT = "tailor.re_vocab"
RE_VOCAB_VERSION = 1
# Measurements and free ids are numbers, not vocabulary; they would flood the tables.
_NON_TOKEN_PREFIXES = ("top.", "dress.", "pants.", "skirt.", "jumpsuit.")


def term(key: str, value: str) -> str:
    return f"{key.strip().lower()}={value.strip().lower()}"


def is_token_key(key: str) -> bool:
    return not key.startswith(_NON_TOKEN_PREFIXES)


STD_VOCAB_FORMAT = "tailor.std_vocab"


class StdVocab:
    """Fixed STD vocabulary: key-aware ids into one shared embedding table.

    "Fixed" means it never grows at run time: it is the default domain vocabulary
    (``std_vocab.json``) extended once, at training time, with the STD values of the
    training catalog (H&M product types, MovieLens genres ...), and shipped with the model
    version whose embedding table it indexes. Unseen values map to ``key=<unk>``."""

    def __init__(self, keys: dict[str, list[str]]) -> None:
        tokens = list(_RESERVED)
        for key, values in keys.items():
            tokens.append(term(key, "<unk>"))
            tokens.extend(dict.fromkeys(term(key, v) for v in values))
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}
        self.values = {k: list(v) for k, v in keys.items()}
        self.keys = frozenset(k.lower() for k in keys)

    @classmethod
    def default(cls) -> StdVocab:
        text = resources.files("models").joinpath("std_vocab.json").read_text(encoding="utf-8")
        return cls(json.loads(text)["keys"])

    @classmethod
    def load(cls, path: Path) -> StdVocab:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != STD_VOCAB_FORMAT:
            raise ValueError(f"{path}: not a {STD_VOCAB_FORMAT} file")
        return cls(data["keys"])

    def save(self, path: Path) -> None:
        doc = {"format": STD_VOCAB_FORMAT, "version": 1, "keys": self.values}
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")

    def extended(self, blocks: Iterable[FlatAttributes], min_count: int = 2) -> StdVocab:
        """This vocabulary plus the values seen at least ``min_count`` times in ``blocks``
        (rarer ones stay ``<unk>``: one-off values would get an untrainable row)."""
        counts = Counter(
            (key.lower(), v.lower())
            for attrs in blocks
            for key, values in attrs.items()
            if is_token_key(key)
            for v in values
        )
        keys = {k: list(v) for k, v in self.values.items()}
        for (key, value), n in sorted(counts.items()):
            if n >= min_count and term(key, value) not in self._ids:
                keys.setdefault(key, []).append(value)
        return StdVocab(keys)

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, key: str, value: str) -> int:
        found = self._ids.get(term(key, value))
        if found is not None:
            return found
        return self._ids.get(term(key, "<unk>"), UNK)

    def encode(self, attrs: FlatAttributes) -> list[int]:
        return [self.id(k, v) for k, values in attrs.items() if is_token_key(k) for v in values]


class ReVocab:
    """Dynamic RE vocabulary persisted as an append-only JSON-lines log."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.tokens: list[str] = list(_RESERVED)
        self._ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        self._lock = threading.Lock()
        if path is not None and path.exists():
            self._load(path)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def _load(self, path: Path) -> None:
        with path.open(encoding="utf-8") as fh:
            header = json.loads(fh.readline() or "{}")
            if header.get("format") != RE_VOCAB_FORMAT or header.get("version") != RE_VOCAB_VERSION:
                raise ValueError(f"{path}: not a {RE_VOCAB_FORMAT} v{RE_VOCAB_VERSION} file")
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row["id"] != len(self.tokens):
                    raise ValueError(f"{path}: id {row['id']} out of order")
                self._ids[row["term"]] = row["id"]
                self.tokens.append(row["term"])

    def _append(self, new: list[str]) -> None:
        if self.path is None or not new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with self.path.open("a", encoding="utf-8") as fh:
            if fresh:
                header = {"format": RE_VOCAB_FORMAT, "version": RE_VOCAB_VERSION}
                fh.write(json.dumps(header) + "\n")
            for token in new:
                fh.write(json.dumps({"id": self._ids[token], "term": token}) + "\n")
            fh.flush()
            # The id must be durable before any vector built with it is.
            os.fsync(fh.fileno())

    def lookup(self, token: str) -> int:
        return self._ids.get(token, UNK)

    def add(self, tokens: Iterable[str]) -> list[str]:
        """Give every unseen token the next id; persist them; return the new ones."""
        with self._lock:
            new: list[str] = []
            for token in tokens:
                if token not in self._ids:
                    self._ids[token] = len(self.tokens)
                    self.tokens.append(token)
                    new.append(token)
            self._append(new)
            return new

    def encode(self, attrs: FlatAttributes, grow: bool = True) -> tuple[list[int], list[str]]:
        terms = [term(k, v) for k, values in attrs.items() if is_token_key(k) for v in values]
        new = self.add(terms) if grow else []
        return [self.lookup(t) for t in terms], new

    def copy_to(self, path: Path) -> None:
        """Write a full snapshot (used to ship the vocabulary with a model version)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps({"format": RE_VOCAB_FORMAT, "version": RE_VOCAB_VERSION}) + "\n")
            for i, token in enumerate(self.tokens[len(_RESERVED) :], start=len(_RESERVED)):
                fh.write(json.dumps({"id": i, "term": token}) + "\n")
