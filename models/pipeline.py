"""The trained two-tower pipeline, offline: what ``tailor retrain`` evaluates and what
``bench/eval`` compares with the baselines. Retrieval is exact inner-product search over
the catalog matrix (Milvus' ANN recall is measured on its own in ``bench/ann_recall``);
the ranking stages are ``models.ranking.rank``, the code the worker runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm import tqdm

from models.interactions import Event, InteractionLog, Split, TestCase, user_sequences
from models.ranking import EXPLORE_SLOTS, Candidates, RankingModels, rank
from models.reranker import user_features
from models.train_ranking import Catalog, RankingTrainConfig, candidate_rows, exact_top
from models.train_user import Step, state_of

Stage = Literal["two_tower", "deepfm", "mmr", "diversity"]


def steps_by_user(events: Sequence[Event]) -> dict[str, list[Step]]:
    return {u: [Step(e.product_id, e.ts, e.kind) for e in seq] for u, seq in user_sequences(events).items()}


def profile_rows(log: InteractionLog) -> dict[str, dict[str, float | None]]:
    return {u: p.model_dump() for u, p in log.profiles.items()}


@dataclass
class OfflinePipeline:
    catalog: Catalog
    models: RankingModels
    sequences: dict[str, list[Step]]  # the training steps per user (histories, recency)
    profiles: dict[str, dict[str, float | None]]
    popularity: Counter[int]
    candidates: int = 100
    popular_candidates: int = 10
    cooc_candidates: int = 30
    sasrec_candidates: int = 20
    explore: int = EXPLORE_SLOTS  # see models.ranking.EXPLORE_SLOTS

    @classmethod
    def from_split(
        cls, catalog: Catalog, models: RankingModels, split: Split, profiles: dict[str, dict[str, float | None]]
    ) -> OfflinePipeline:
        seqs = steps_by_user(split.train)
        pop = Counter(s.product_id for seq in seqs.values() for s in seq)
        return cls(catalog, models, seqs, profiles, pop)

    def _history(self, case: TestCase) -> list[Step]:
        wanted = set(case.history)
        return [s for s in self.sequences.get(case.user_id, []) if s.product_id in wanted][-50:]

    def user_vectors(self, cases: Sequence[TestCase]) -> np.ndarray:
        assert self.models.user_tower is not None, "the pipeline needs a trained user tower"
        vecs = self.catalog.vector_map()
        out = []
        for lo in range(0, len(cases), 256):
            states = []
            for case in cases[lo : lo + 256]:
                hist = self._history(case)
                now = hist[-1].ts if hist else 0.0
                states.append(state_of(hist, vecs, now, self.profiles.get(case.user_id)))
            out.append(self.models.user_tower.encode(states))
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)

    def rank(self, cases: Sequence[TestCase], k: int, stage: Stage, lam: float = 0.8) -> np.ndarray:
        """(n, k) product ids per case, history excluded, for the pipeline cut at ``stage``."""
        users = self.user_vectors(cases)
        width = k if stage == "two_tower" else self.candidates
        tops = exact_top(users, self.catalog, [c.history for c in cases], max(width, k))
        if stage == "two_tower":
            top = tops[:, :k]
            return np.where(top >= 0, self.catalog.ids[top], -1)
        out = np.full((len(cases), k), -1, dtype=np.int64)
        top_pop = self.popularity.most_common(self.popular_candidates + 60)
        popular = [self.catalog.row[p] for p, _ in top_pop if p in self.catalog.row]
        counts = np.array([self.popularity[int(p)] for p in self.catalog.ids], dtype=np.float32)
        tower = self.models.user_tower
        cfg = RankingTrainConfig(
            candidates=self.candidates,
            popular_candidates=self.popular_candidates,
            cooc_candidates=self.cooc_candidates if self.models.cooccurrence else 0,
            sasrec_candidates=self.sasrec_candidates if self.models.sasrec else 0,
        )
        next_scores = self._sasrec_scores(cases)  # one forward per 256 cases, not per case
        for i, case in enumerate(tqdm(cases, desc=f"rank {stage}", leave=False)):
            hist_rows = [self.catalog.row[p] for p in case.history if p in self.catalog.row]
            scores = self._cooc_scores(case)  # once: the candidates and their features read it
            cooc_ids = self._cooc_ids(case, cfg, scores)
            sasrec_ids = self._sasrec_ids(case, cfg, next_scores, i)
            rows = np.array(candidate_rows(tops[i], cooc_ids, popular, self.catalog, set(hist_rows), cfg, sasrec_ids))
            cands = Candidates(
                vectors=self.catalog.vectors[rows],
                ann=self.catalog.vectors[rows] @ users[i],
                features=[self.catalog.features[r] for r in rows],
                popularity=counts[rows],
                cooc=self._cooc_features(case, rows, scores),
                seq=self._sasrec_features(next_scores, i, rows),
            )
            profile = tower.cfg.profile.features(self.profiles.get(case.user_id)) if tower else None
            user = user_features([self.catalog.features[r] for r in hist_rows], profile)
            history = self.catalog.vectors[hist_rows] if hist_rows else None
            # "mmr" is the simple baseline: MMR over the DeepFM scores, no self-attention.
            models = RankingModels(tower, self.models.deepfm) if stage == "mmr" else self.models
            diversify, explore = stage != "deepfm", self.explore
            order = rank(models, users[i], user, cands, history, k, lam, use_diversity=diversify, explore_slots=explore)
            ids = self.catalog.ids[rows[order]]
            out[i, : len(ids)] = ids
        return out

    def _sasrec_scores(self, cases: Sequence[TestCase]) -> np.ndarray | None:
        model = self.models.sasrec
        if model is None or not cases:
            return None
        chunks = [cases[lo : lo + 256] for lo in range(0, len(cases), 256)]
        return np.concatenate([model.scores([c.history for c in chunk]) for chunk in chunks])

    def _sasrec_ids(self, case: TestCase, cfg: RankingTrainConfig, next_scores: np.ndarray | None, i: int) -> list[int]:
        model = self.models.sasrec
        if model is None or next_scores is None:
            return []
        return model.candidates(next_scores[i], cfg.sasrec_candidates + 20, set(case.history))

    def _sasrec_features(self, next_scores: np.ndarray | None, i: int, rows: np.ndarray) -> np.ndarray | None:
        model = self.models.sasrec
        if model is None or next_scores is None:
            return None
        return model.features(next_scores[i], [int(p) for p in self.catalog.ids[rows]])

    def _cooc_scores(self, case: TestCase) -> dict[int, float]:
        table = self.models.cooccurrence
        return table.scores(case.history) if table else {}

    def _cooc_ids(self, case: TestCase, cfg: RankingTrainConfig, scores: dict[int, float]) -> list[int]:
        table = self.models.cooccurrence
        return table.candidates(case.history, cfg.cooc_candidates + 20, set(case.history), (), scores) if table else []

    def _cooc_features(self, case: TestCase, rows: np.ndarray, scores: dict[int, float]) -> np.ndarray | None:
        table = self.models.cooccurrence
        ids = [int(p) for p in self.catalog.ids[rows]]
        return table.features(case.history, ids, (), scores) if table else None
