"""deepctr-torch, imported without its import-time side effect.

Importing ``deepctr_torch`` starts a non-daemon thread that asks pypi.org for a newer
version (``requests.get`` without a timeout) and prints to stdout when it cannot reach it.
A worker must not phone home nor hang its exit on a dead network, so the check is
short-circuited while the package is imported. Import deepctr-torch only from here.
"""

from __future__ import annotations

import contextlib
import io
import threading

import requests


def _no_version_check(*_: object, **__: object) -> None:
    raise requests.ConnectionError("version check disabled by tailor")


def _import_quietly() -> None:
    real_get, before = requests.get, set(threading.enumerate())
    requests.get = _no_version_check  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import deepctr_torch  # noqa: F401

            for thread in set(threading.enumerate()) - before:
                thread.join(timeout=2.0)
    finally:
        requests.get = real_get


_import_quietly()

from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat  # noqa: E402
from deepctr_torch.layers.sequence import SequencePoolingLayer  # noqa: E402
from deepctr_torch.models import DeepFM  # noqa: E402

__all__ = ["DeepFM", "DenseFeat", "SequencePoolingLayer", "SparseFeat", "VarLenSparseFeat"]
