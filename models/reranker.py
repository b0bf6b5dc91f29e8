"""DeepFM reranker (seed-b Stage 3) on deepctr-torch, with weight transfer from the item tower.

Features of one (user, candidate) pair:
  sparse  coarse, fine, colour            STD ids         -> table "std"
          std (all STD ids of the item)   VarLen, mean    -> table "std"
          re  (RE ids of the item)        VarLen, mean    -> table "re"
          user_fine (the user's most frequent fine category)  -> table "std"
          user_std / user_re (the user's most frequent STD / RE ids) VarLen -> "std" / "re"
  dense   price (log, z-scored), ann (user . item, the retrieval score), hist_sim (max
          item . history item), pop (log count, scaled) + pop_known, profile z-scores +
          missing flags; cooc (log1p co-occurrence score with the history,
          ``models.cooccurrence``) + cooc_known, in versions trained with that component;
          seq (the SASRec next-item score, ``models.sasrec``, z-scored within the list)
          + seq_known, likewise
  Popularity without burying new items: an item with no interactions is "popularity
  unknown" (pop = 0, pop_known = 0), and in training a random quarter of the rows is
  shown that way too, whatever their count. So "unknown" learns the average click rate,
  not the rate of the unpopular, and a product created a minute ago is ranked by content.
  The same rows hide the co-occurrence too (a new product has neither).

Weight transfer (documented mapping): every STD feature shares ONE 64-d table named "std"
whose row i is the item tower's ``std_emb`` row i (same StdVocab ids); every RE feature
shares ONE table "re" whose row i is the tower's ``re_emb`` row i (same ReVocab ids). The
rows are copied scaled by ``transfer_scale`` (the FM term sums squared embeddings; the
tower's rows are ~unit norm, deepctr starts at 1e-4). Ids the reranker's table has no row
for (RE terms added after training) fall back to 0 = padding, i.e. "no information".
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file

from models.deepctr import DeepFM, DenseFeat, SequencePoolingLayer, SparseFeat, VarLenSparseFeat
from models.encoder import ItemEncoder, ItemInput
from models.item_tower import ItemTower

DENSE = (
    *("price", "ann", "hist_sim", "pop", "pop_known"),
    *("z_height", "z_weight", "z_age", "miss_height", "miss_weight", "miss_age"),
)
# Co-occurrence with the history (models.cooccurrence) + known flag: only in versions
# trained with the component (``RerankerConfig.cooc``), so older versions still load.
COOC_DENSE = ("cooc", "cooc_rel", "cooc_known")
# The SASRec next-item score (models.sasrec, z-scored in the list) + known flag: likewise
# only in versions trained with it (``RerankerConfig.sequence``).
SEQ_DENSE = ("seq", "seq_known")
# The per-pair columns of ``DeepFMReranker.pair_inputs``, in its order.
PAIR = ("ann", "hist_sim", "pop", "pop_known", *COOC_DENSE, *SEQ_DENSE)


@dataclass(frozen=True)
class ItemFeatures:
    coarse: int
    fine: int
    color: int
    std: tuple[int, ...]
    re: tuple[int, ...]
    price: float = 0.0


@dataclass
class UserFeatures:
    fine: int = 0
    std: list[int] = field(default_factory=list)
    re: list[int] = field(default_factory=list)
    profile: list[float] = field(default_factory=lambda: [0.0] * 3 + [1.0] * 3)  # z-scores, missing flags


def item_features(encoder: ItemEncoder, item: ItemInput, price: float | None = None) -> ItemFeatures:
    colors = item.std.get("color") or [""]
    return ItemFeatures(
        coarse=encoder.std_vocab.id("coarse", item.coarse),
        fine=encoder.std_vocab.id("fine", item.fine),
        color=encoder.std_vocab.id("color", colors[0]),
        std=tuple(encoder.std_tokens(item)),
        re=tuple(encoder.re_tokens(item)),
        price=float(price or 0.0),
    )


def user_features(history: Sequence[ItemFeatures], profile: list[float] | None, top: int = 16) -> UserFeatures:
    """What the user's history says, as the reranker's user-side sparse features."""
    if not history:
        return UserFeatures(profile=profile or UserFeatures().profile)
    fine = Counter(it.fine for it in history).most_common(1)[0][0]
    std = [i for i, _ in Counter(i for it in history for i in it.std).most_common(top)]
    re = [i for i, _ in Counter(i for it in history for i in it.re).most_common(top)]
    return UserFeatures(fine=fine, std=std, re=re, profile=profile or UserFeatures().profile)


class RerankerConfig(BaseModel):
    std_size: int
    re_size: int
    dim: int = 64  # = the item tower's token dim, so the tables transfer 1:1
    max_std: int = 24
    max_re: int = 16
    max_user: int = 16
    dnn: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    transfer_scale: float = 0.1
    price_mean: float = 0.0
    price_std: float = 1.0
    pop_scale: float = 1.0  # log1p of the largest training count
    cooc: bool = False  # the co-occurrence features are inputs
    # Multiplies the co-occurrence score (1 / its mean over training candidates that have
    # one): raw scores are ~0.1, too small an input for DeepFM to weigh in a few epochs.
    cooc_scale: float = 1.0
    sequence: bool = False  # the SASRec features are inputs


def dense_inputs(cfg: RerankerConfig) -> tuple[str, ...]:
    """DeepFM's dense feature names: the base ones, then the components it was trained with."""
    return DENSE + (COOC_DENSE if cfg.cooc else ()) + (SEQ_DENSE if cfg.sequence else ())


ITEM_ROWS_KEPT = 200_000  # items whose matrix columns a reranker keeps (then it starts over)


def _pad(rows: Sequence[Sequence[int]], width: int, limit: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        ids = [j if j < limit else 0 for j in row[:width]]
        out[i, : len(ids)] = ids
    return out


def _spread(per_user: torch.Tensor, inverse: torch.Tensor | None, n: int) -> torch.Tensor:
    """Per-user rows to per-row ones (``inverse`` None: one user for all ``n`` rows)."""
    return per_user.expand(n, -1, -1) if inverse is None else per_user[inverse]


class DeepFMReranker:
    def __init__(self, cfg: RerankerConfig, seed: int = 0) -> None:
        self.cfg = cfg
        c = cfg
        std = dict(vocabulary_size=c.std_size, embedding_dim=c.dim, embedding_name="std")
        re = dict(vocabulary_size=c.re_size, embedding_dim=c.dim, embedding_name="re")
        self.columns = [
            SparseFeat("coarse", **std),
            SparseFeat("fine", **std),
            SparseFeat("color", **std),
            SparseFeat("user_fine", **std),
            VarLenSparseFeat(SparseFeat("std", **std), maxlen=c.max_std, combiner="mean"),
            VarLenSparseFeat(SparseFeat("re", **re), maxlen=c.max_re, combiner="mean"),
            VarLenSparseFeat(SparseFeat("user_std", **std), maxlen=c.max_user, combiner="mean"),
            VarLenSparseFeat(SparseFeat("user_re", **re), maxlen=c.max_user, combiner="mean"),
            *(DenseFeat(name, 1) for name in dense_inputs(c)),
        ]
        torch.manual_seed(seed)
        self.model = DeepFM(
            self.columns,
            self.columns,
            dnn_hidden_units=c.dnn,
            dnn_dropout=c.dropout,
            l2_reg_embedding=1e-6,
            seed=seed,
            task="binary",
            device="cpu",
        )
        self._column_order = [name for name, _ in sorted(self.model.feature_index.items(), key=lambda kv: kv[1][0])]
        self._item_rows: dict[ItemFeatures, np.ndarray] = {}
        index = self.model.feature_index
        self._sparse = [(f.embedding_name, *index[f.name]) for f in self.columns if isinstance(f, SparseFeat)]
        self._varlen = [(f.embedding_name, *index[f.name]) for f in self.columns if isinstance(f, VarLenSparseFeat)]
        self._dense = [index[f.name] for f in self.columns if isinstance(f, DenseFeat)]
        # The user's own sparse columns (user_fine, user_std, user_re): on the request path
        # every row has the same user, so their lookups and poolings are done on one row.
        user = [index[f.name] for f in self.columns if not isinstance(f, DenseFeat) and f.name.startswith("user_")]
        self._user_cols = torch.tensor([c for lo, hi in user for c in range(lo, hi)])
        self._user_starts = frozenset(lo for lo, _ in user)
        # Every VarLen feature is a masked mean; deepctr builds a new pooling module (an
        # nn.Module __init__ and .to()) for each of them in every forward.
        self._pool = SequencePoolingLayer(mode="mean", supports_masking=True)

    def transfer(self, tower: ItemTower) -> dict[str, int]:
        """Copy the tower's STD/RE rows into the shared "std"/"re" tables; returns rows copied."""
        copied = {}
        with torch.no_grad():
            for name, source in (("std", tower.std_emb.weight), ("re", tower.re_emb.weight)):
                target = self.model.embedding_dict[name].weight
                n = min(len(target), len(source))
                target[:n] = source[:n] * self.cfg.transfer_scale
                copied[name] = n
        return copied

    def _item_row(self, item: ItemFeatures) -> np.ndarray:
        """coarse, fine, colour, the padded STD and RE ids, z-scored log price: what the
        matrix needs of one item, kept per item (the same candidates come back request
        after request; ~8 us of Python per item per request before)."""
        row = self._item_rows.get(item)
        if row is None:
            c = self.cfg
            row = np.zeros(4 + c.max_std + c.max_re, dtype=np.float32)
            row[:3] = (item.coarse, item.fine, item.color)
            row[3 : 3 + c.max_std] = _pad([item.std], c.max_std, c.std_size)[0]
            row[3 + c.max_std : -1] = _pad([item.re], c.max_re, c.re_size)[0]
            row[-1] = (math.log1p(item.price) - c.price_mean) / c.price_std
            if len(self._item_rows) >= ITEM_ROWS_KEPT:
                self._item_rows.clear()
            self._item_rows[item] = row
        return row

    def _user_rows(self, users: Sequence[UserFeatures]) -> np.ndarray:
        """(n, 1 + 2 * max_user + 6): user_fine, the padded STD and RE ids, the profile;
        one row computed and repeated when every pair has the same user (serving)."""
        c = self.cfg
        distinct = users[:1] if users and all(u is users[0] for u in users) else users
        rows = np.concatenate(
            [
                np.array([[u.fine] for u in distinct], dtype=np.float32).reshape(len(distinct), 1),
                _pad([u.std for u in distinct], c.max_user, c.std_size),
                _pad([u.re for u in distinct], c.max_user, c.re_size),
                np.array([u.profile for u in distinct], dtype=np.float32).reshape(len(distinct), 6),
            ],
            axis=1,
        )
        return np.repeat(rows, len(users), axis=0) if len(distinct) < len(users) else rows

    def matrix(self, users: Sequence[UserFeatures], items: Sequence[ItemFeatures], dense: np.ndarray) -> np.ndarray:
        """The deepctr input matrix, columns in the model's ``feature_index`` order.
        ``dense``: (n, 4) = ann, hist_sim, interaction count, known flag per pair, then
        optionally co-occurrence score, relative score, known flag, SASRec z-score, known
        flag (absent = unknown; ``models.ranking.pair_dense``)."""
        c = self.cfg
        n = len(items)
        width = 4 + c.max_std + c.max_re
        item = np.stack([self._item_row(it) for it in items]) if n else np.zeros((0, width), np.float32)
        user = self._user_rows(users)
        s, r, u = 3 + c.max_std, 3 + c.max_std + c.max_re, 1 + 2 * c.max_user
        parts = {
            "coarse": item[:, 0:1],
            "fine": item[:, 1:2],
            "color": item[:, 2:3],
            "user_fine": user[:, 0:1],
            "std": item[:, 3:s],
            "re": item[:, s:r],
            "user_std": user[:, 1 : 1 + c.max_user],
            "user_re": user[:, 1 + c.max_user : u],
            "price": item[:, r : r + 1],
        }
        pair = self.pair_inputs(dense)
        for j, name in enumerate(PAIR):
            parts[name] = pair[:, j : j + 1]
        for j, name in enumerate(DENSE[5:]):
            parts[name] = user[:, u + j : u + j + 1]
        return np.concatenate([parts[name] for name in self._column_order], axis=1).astype(np.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """deepctr's ``DeepFM.forward`` (linear + FM + DNN, sigmoid) with the same modules
        and the same operations in the same order, so the same numbers (a test holds it to
        the library's forward), minus its per-call overhead: the feature columns filtered
        again and a pooling module constructed per VarLen feature (8 per call), and, when
        every row has the same user, the user's lookups and poolings repeated per row."""
        m, linear = self.model, self.model.linear_model
        n = x.shape[0]
        # Few users for many rows (serving: each request's candidates, one or several
        # requests): each user's columns are looked up and pooled once and the result
        # spread over that user's rows; the same numbers per row.
        firsts, inverse = self._distinct_users(x)
        embedded, weights = [], []  # the FM/DNN embeddings and the linear part's, per feature
        for (name, lo, hi), pooled in [(f, False) for f in self._sparse] + [(f, True) for f in self._varlen]:
            shared = firsts is not None and lo in self._user_starts
            ids = (x[firsts] if shared else x)[:, lo:hi].long()
            e, w = m.embedding_dict[name](ids), linear.embedding_dict[name](ids)
            if pooled:
                mask = ids != 0
                e, w = self._pool([e, mask]), self._pool([w, mask])
            embedded.append(_spread(e, inverse, n) if shared else e)
            weights.append(_spread(w, inverse, n) if shared else w)
        dense = torch.cat([x[:, lo:hi] for lo, hi in self._dense], dim=-1)
        logit = x.new_zeros((x.shape[0], 1))
        logit += torch.sum(torch.cat(weights, dim=-1), dim=-1, keepdim=False)
        logit += dense.matmul(linear.weight)
        logit += m.fm(torch.cat(embedded, dim=1))
        deep = torch.cat([torch.flatten(torch.cat(embedded, dim=-1), start_dim=1), dense], dim=-1)
        logit += m.dnn_linear(m.dnn(deep))
        return m.out(logit)

    def _distinct_users(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(the first row of each distinct user, each row's user index; None: one user)
        or (None, None) when no user has two rows (nothing to share)."""
        n = x.shape[0]
        if n <= 1:
            return None, None
        cols = x[:, self._user_cols]
        if bool((cols == cols[:1]).all()):
            return torch.zeros(1, dtype=torch.long), None
        distinct, inverse = torch.unique(cols, dim=0, return_inverse=True)
        if len(distinct) == n:
            return None, None
        firsts = torch.full((len(distinct),), n, dtype=torch.long)
        firsts = firsts.scatter_reduce(0, inverse, torch.arange(n), reduce="amin")
        return firsts, inverse

    def pair_inputs(self, dense: np.ndarray) -> np.ndarray:
        """(n, 9) the pair's dense inputs as DeepFM sees them (columns ``PAIR``): ann,
        hist_sim, pop (log count / ``pop_scale``), pop_known, cooc (x ``cooc_scale``),
        cooc_rel, cooc_known, seq, seq_known. The self-attention reranker takes the same
        scaled columns."""
        c = self.cfg
        cooc = dense[:, 4:7] if dense.shape[1] >= 7 else np.zeros((len(dense), 3), np.float32)
        seq = dense[:, 7:9] if dense.shape[1] >= 9 else np.zeros((len(dense), 2), np.float32)
        pop = np.log1p(np.maximum(dense[:, 2:3], 0)) / max(c.pop_scale, 1e-6)
        columns = [dense[:, :2], pop, dense[:, 3:4], cooc[:, :1] * c.cooc_scale, cooc[:, 1:3], seq]
        return np.concatenate(columns, axis=1).astype(np.float32)

    @torch.inference_mode()
    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model.training:  # eval() walks every submodule: ~0.5 ms a request when done always
            self.model.eval()
        return self.forward(torch.from_numpy(x)).numpy().ravel()

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "deepfm.safetensors"))
        (folder / "deepfm.json").write_text(self.cfg.model_dump_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> DeepFMReranker:
        cfg = RerankerConfig.model_validate(json.loads((folder / "deepfm.json").read_text(encoding="utf-8")))
        reranker = cls(cfg)
        reranker.model.load_state_dict(load_file(str(folder / "deepfm.safetensors")))
        reranker.model.eval()
        return reranker
