from __future__ import annotations

from pathlib import Path

import pytest

from models.vocab import UNK, ReVocab, StdVocab, term


def test_std_ids_are_key_aware_and_fixed() -> None:
    vocab = StdVocab.default()
    coat = vocab.id("category", "01outer_01coat")
    assert coat > UNK and vocab.id("category", "01OUTER_01COAT") == coat
    # The same value under two keys gets two ids (one shared table, key-aware ids).
    assert vocab.id("elasticity", "none") != vocab.id("transparency", "none")
    assert vocab.id("color", "Octarine") == vocab.id("color", "<unk>") != UNK
    assert vocab.id("no_such_key", "x") == UNK
    assert len(StdVocab.default()) == len(vocab)  # nothing grows at run time
    # Measurements are numbers, not tokens.
    assert vocab.encode({"top.chest_size": ["100.0"], "color": ["Black"]}) == [vocab.id("color", "black")]


def test_re_vocab_grows_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "re.jsonl"
    vocab = ReVocab(path)
    ids, new = vocab.encode({"fabric.feature": ["Gorpcore_Ripstop"], "fit.vibe": ["Relaxed"]})
    assert new == ["fabric.feature=gorpcore_ripstop", "fit.vibe=relaxed"] and ids == [2, 3]
    ids2, new2 = vocab.encode({"fit.vibe": ["relaxed"], "length.feeling": ["Semi-Crop"]})
    assert ids2 == [3, 4] and new2 == ["length.feeling=semi-crop"]

    reopened = ReVocab(path)
    assert reopened.tokens == vocab.tokens
    assert reopened.encode({"fit.vibe": ["Relaxed"]}) == ([3], [])
    assert reopened.encode({"fit.vibe": ["Boxy"]}, grow=False) == ([UNK], [])


def test_re_vocab_refuses_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "re.jsonl"
    path.write_text('{"format": "something-else", "version": 9}\n')
    with pytest.raises(ValueError, match="not a tailor.re_vocab v1 file"):
        ReVocab(path)


def test_snapshot_copy(tmp_path: Path) -> None:
    vocab = ReVocab()
    vocab.add([term("a", "x"), term("b", "y")])
    vocab.copy_to(tmp_path / "snap.jsonl")
    assert ReVocab(tmp_path / "snap.jsonl").tokens == vocab.tokens
