"""Loaders of the shared data sets' item sides, on small fixtures written here (the tests
never need ../shared/data)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from models import registry
from models.ablations import ConcatMLPTower
from models.item_tower import TowerConfig
from models.text_encoder import embed_texts
from models.train_item import TrainConfig, train_item_tower
from models.vocab import StdVocab
from streams.datasets import hm_articles, movielens, release_era

HM_HEADER = [
    "article_id", "prod_name", "product_type_name", "product_group_name", "graphical_appearance_name",
    "colour_group_name", "section_name", "garment_group_name", "index_group_name", "detail_desc",
]  # fmt: skip
HM_ROWS = [
    ["0108775015", "Strap top", "Vest top", "Garment Upper body", "Solid", "Black", "Womens Basic", "Jersey Basic",
     "Ladieswear", "Jersey top with narrow shoulder straps."],
    ["0110065001", "OP T-shirt (Idro)", "Bra", "Underwear", "Solid", "Black", "Womens Lingerie", "Under-, Nightwear",
     "Ladieswear", "Microfibre T-shirt bra with underwired, moulded, lightly padded cups."],
    ["0111586001", "Wool coat", "Coat", "Garment Upper body", "Melange", "Grey", "Womens Outerwear", "Outdoor",
     "Ladieswear", ""],
]  # fmt: skip


def write_hm(tmp_path: Path) -> Path:
    path = tmp_path / "articles.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HM_HEADER)
        writer.writerows(HM_ROWS)
    return path


def test_hm_articles_map_to_std_re_title_and_hierarchy(tmp_path: Path) -> None:
    items = hm_articles(write_hm(tmp_path))
    assert [it.product_id for it in items] == [108775015, 110065001, 111586001]
    top, _, coat = items
    assert (top.coarse, top.fine) == ("garment upper body", "vest top")
    assert top.title == "Strap top" and top.description.startswith("Jersey top")
    assert top.std["color"] == ["Black"] and top.std["index_group"] == ["Ladieswear"]
    assert coat.re["fabric.feature"] == ["Wool_Normal"]  # RE extracted from the text by the enricher
    assert top.enricher == "rules"


def test_movielens_genres_are_std_and_tags_are_re(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n2,Heat (1995),Action|Crime\n"
        "3,Untitled (2000),(no genres listed)\n"
    )
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,Pixar,1\n2,1,pixar,2\n3,1,fun,3\n")
    toy, heat, untitled = movielens(tmp_path)
    assert (toy.coarse, toy.fine) == ("adventure", "adventure|animation")
    assert toy.std["genre"] == ["Adventure", "Animation", "Children"] and toy.re == {"tag": ["pixar", "fun"]}
    assert heat.re == {} and untitled.coarse == "none"
    assert (toy.std["decade"], toy.std["era"], untitled.std["era"]) == (["1990s"], ["1995-1999"], ["2000-2004"])


def test_release_era_reads_the_year_at_the_end_of_a_title() -> None:
    assert release_era("Babylon 5 (1994-1998)") == {"decade": ["1990s"], "era": ["1990-1994"]}
    assert release_era("Heat (1999) ") == {"decade": ["1990s"], "era": ["1995-1999"]}
    assert release_era("1984 (1956)")["era"] == ["1955-1959"]  # a year inside the title is not the release
    assert release_era("Moonlight") == {}  # no year: no era tokens (not a made-up one)


def test_std_vocab_extends_with_the_catalog_and_ships_with_the_model(tmp_path: Path) -> None:
    items = hm_articles(write_hm(tmp_path)) * 4  # every value seen >= 2 times
    trained = train_item_tower(items, TrainConfig(simcse_epochs=1, triplet_epochs=1, batch_size=8), log=lambda _: None)
    assert trained.std_vocab.id("product_type", "Coat") != trained.std_vocab.id("product_type", "unseen")
    assert len(trained.std_vocab) > len(StdVocab.default())
    manifest = registry.Manifest(version="t1", tower=trained.tower.cfg)
    registry.save(tmp_path / "m", manifest, trained.tower, trained.std_vocab, trained.re_vocab)
    loaded = registry.load(tmp_path / "m", "t1")
    assert loaded.std_vocab.tokens == trained.std_vocab.tokens
    assert np.allclose(trained.encoder().encode(items[:3]), registry_encode(loaded, items[:3]), atol=1e-6)


def registry_encode(model: registry.Artifact, items: list) -> np.ndarray:
    from models.encoder import ItemEncoder
    from models.vocab import ReVocab

    return ItemEncoder(model.tower, model.std_vocab, ReVocab(model.re_vocab_path), "x").encode(items)


def test_concat_mlp_ablation_keeps_the_interface() -> None:
    tower = ConcatMLPTower(TowerConfig(std_size=20, re_size=10, title_size=50)).eval()
    ids = torch.tensor([[2, 3, 0], [4, 0, 0]])
    out = tower(ids, torch.tensor([[5, 0], [0, 0]]), torch.tensor([[7, 8, 9], [0, 0, 0]]))
    assert out.shape == (2, 128) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not hasattr(tower, "cross")


def test_text_encoder_is_offline_and_semantic() -> None:
    v = embed_texts(["black wool coat", "dark woollen overcoat", "red summer dress"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2]
