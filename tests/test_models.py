from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from models import registry
from models.augment import feature_dropout, token_mask, view
from models.encoder import ItemEncoder
from models.rerank import intra_list_diversity, mmr
from models.train_item import TrainConfig, train_item_tower
from models.user_vector import sequence_vector
from models.vocab import ReVocab
from schemas.events import ProductEnriched


def item(
    pid: int, fine: str, coarse: str, colour: str, re: dict | None = None, title: str | None = None
) -> ProductEnriched:
    return ProductEnriched(
        product_id=pid,
        title=title or f"{colour} {fine}",
        std={"category": [f"{coarse}_{fine}"], "color": [colour]},
        re=re or {},
        coarse=coarse,
        fine=fine,
        enricher="test",
    )


def encoder(tmp_path: Path) -> ItemEncoder:
    model = registry.load_or_init(tmp_path / "models")
    return ItemEncoder(model.tower, model.std_vocab, ReVocab(tmp_path / "re.jsonl"), model.manifest.version, 2)


def test_vectors_are_128d_unit_and_handle_missing_re(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    items = [
        item(1, "coat", "outer", "Black", {"fit.vibe": ["Relaxed"]}),
        item(2, "coat", "outer", "Black"),
        item(3, "dress", "onepiece", "Red", title=""),
    ]
    for it in items:
        enc.register(it.re)
    vecs = enc.encode(items)
    assert vecs.shape == (3, 128) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5) and np.isfinite(vecs).all()


def test_new_re_term_at_run_time_gives_a_finite_vector_and_grows_the_table(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    before = enc.tower.re_emb.num_embeddings
    many = {f"style.word{i}": [f"term {i}"] for i in range(40)}
    for chunk in range(0, 1200, 40):  # more new terms than the table has rows
        enc.register({f"{k}{chunk}": v for k, v in many.items()})
    assert enc.tower.re_emb.num_embeddings > before
    vec = enc.encode([item(9, "coat", "outer", "Gray", {"style.word0": ["term 0"], "style.word1120": ["term 1"]})])
    assert np.isfinite(vec).all()


def test_new_term_starts_from_its_trained_siblings(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    vocab = enc.re_vocab
    vocab.add(["fabric.feature=cashmere_thick", "fabric.feature=cotton_thin"])
    late = ItemEncoder(enc.tower, enc.std_vocab, vocab, "v", trained_terms=len(vocab))
    late.register({"fabric.feature": ["Cashmere_Heavy"]})
    w = late.tower.re_emb.weight
    new_id, sibling = vocab.lookup("fabric.feature=cashmere_heavy"), vocab.lookup("fabric.feature=cashmere_thick")
    assert torch.allclose(w[new_id], w[sibling])


def test_attention_masks_padding(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    one = item(1, "coat", "outer", "Black", {"fit.vibe": ["Relaxed"]})
    enc.register(one.re)
    alone = enc.encode([one])
    padded = enc.encode(
        [one, item(2, "dress", "onepiece", "Red", {f"k{i}": ["v"] for i in range(20)}, title="a b c d e f g h")]
    )
    assert np.allclose(alone[0], padded[0], atol=1e-5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    it = item(1, "coat", "outer", "Black")
    first = enc.encode([it])
    model = registry.load(tmp_path / "models", registry.latest_version(tmp_path / "models"))
    again = ItemEncoder(model.tower, model.std_vocab, ReVocab(), model.manifest.version).encode([it])
    assert np.allclose(first, again, atol=1e-6)


def test_training_is_deterministic_with_a_seed_and_separates_categories() -> None:
    colours = ["Black", "White", "Red", "Blue", "Green", "Beige"]
    items = [
        item(i, f, c, colours[i % 6], {"fit.vibe": [["Relaxed", "Slim"][i % 2]]})
        for i, (f, c) in enumerate(
            [("coat", "outer"), ("jacket", "outer"), ("dress", "onepiece"), ("skirt", "bottom")] * 12
        )
    ]
    cfg = TrainConfig(simcse_epochs=2, triplet_epochs=3, batch_size=16)
    first = train_item_tower(items, cfg, log=lambda _: None)
    second = train_item_tower(items, cfg, log=lambda _: None)
    assert first.history.simcse == second.history.simcse and first.history.triplet == second.history.triplet
    e1, e2 = first.encoder("a").encode(items), second.encoder("b").encode(items)
    assert np.allclose(e1, e2, atol=1e-5)


def test_augmentations_keep_a_token_and_mask_only_real_ones() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])
    dropped = feature_dropout(ids, p=1.0, gen=gen)
    assert ((dropped != 0).sum(1) >= 1).all()
    masked = token_mask(ids, p=1.0, gen=gen)
    assert (masked[ids == 0] == 0).all() and (masked[ids != 0] == 103).all()


def test_sequence_vector_prefers_recent_items() -> None:
    old, new = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    v = sequence_vector(np.stack([old, new]))
    assert v[1] > v[0] and abs(np.linalg.norm(v) - 1) < 1e-6


def test_mmr_trades_relevance_for_diversity() -> None:
    vecs = np.array([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rel = np.array([0.9, 0.89, 0.5])
    assert mmr(rel, vecs, 2, lam=1.0) == [0, 1]
    assert mmr(rel, vecs, 2, lam=0.5) == [0, 2]
    assert intra_list_diversity(vecs[[0, 2]]) > intra_list_diversity(vecs[[0, 1]])
    assert mmr(np.array([]), np.zeros((0, 2)), 3, 0.5) == []


def test_re_block_dropout_empties_whole_rows_only_when_asked() -> None:
    gen = torch.Generator().manual_seed(0)
    std, re, title = torch.tensor([[5, 6]] * 64), torch.tensor([[7, 8, 9]] * 64), torch.tensor([[10]] * 64)
    _, kept, _ = view(std, re, title, 0.0, 0.0, gen, re_block_p=0.0)
    assert torch.equal(kept, re)
    _, dropped, _ = view(std, re, title, 0.0, 0.0, gen, re_block_p=0.5)
    empty = (dropped == 0).all(1)
    assert 0 < int(empty.sum()) < 64 and torch.equal(dropped[~empty], re[~empty])


def test_hierarchical_batches_do_not_depend_on_the_hash_seed() -> None:
    code = (
        "from models.sampler import HierarchicalBatchSampler as S;"
        "c=['outer']*30+['top']*30+['bottom']*30;"
        "f=[x for x in ('coat','jacket','jumper','shirt','tee','vest','pants','skirt','shorts') for _ in range(10)];"
        "print(list(S(c,f,batch_size=64,seed=3)))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1


def test_training_writes_a_checkpoint_per_stage(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    items = [item(i, f, c, "Black") for i, (f, c) in enumerate([("coat", "outer"), ("skirt", "bottom")] * 8)]
    cfg = TrainConfig(simcse_epochs=1, triplet_epochs=1, batch_size=8)
    trained = train_item_tower(items, cfg, log=lambda _: None, checkpoint_dir=tmp_path / "ckpt")
    written = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert written == {"stage1_simcse.safetensors", "stage2_triplet.safetensors"}
    final = load_file(str(tmp_path / "ckpt" / "stage2_triplet.safetensors"))
    assert all(torch.equal(final[k], v) for k, v in trained.tower.state_dict().items())
