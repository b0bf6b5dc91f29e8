"""docker/: the compose file wires the worker to Kafka and Milvus, the image pins CPU torch.

Static checks only (no Docker engine here). The compose file is parsed with PyYAML when it is
importable (it is not a declared dependency); otherwise the same facts are checked on the text.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the environment
    yaml = None

SERVICES = ("kafka", "etcd", "minio", "milvus", "topics", "model", "worker")


def _compose() -> dict[str, Any] | None:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8")) if yaml is not None else None


def test_compose_services_exist() -> None:
    doc = _compose()
    if doc is None:
        text = COMPOSE.read_text(encoding="utf-8")
        for name in SERVICES:
            assert re.search(rf"^  {name}:$", text, re.MULTILINE), name
        return
    assert set(SERVICES) <= set(doc["services"])
    assert doc["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert doc["services"]["milvus"]["image"].startswith("milvusdb/milvus:v2.5.")


def test_worker_points_at_kafka_and_milvus() -> None:
    doc = _compose()
    if doc is None:
        text = COMPOSE.read_text(encoding="utf-8")
        assert "TAILOR_KAFKA_BOOTSTRAP: kafka:9092" in text
        assert "TAILOR_MILVUS_URI: http://milvus:19530" in text
        return
    worker = doc["services"]["worker"]
    env = worker["environment"]
    assert env["TAILOR_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["TAILOR_MILVUS_URI"] == "http://milvus:19530"
    # the model dir is a shared named volume, mounted where TAILOR_MODEL_DIR points
    mounts = dict(v.split(":", 1)[::-1] for v in worker["volumes"])
    assert mounts[env["TAILOR_MODEL_DIR"]] in doc["volumes"]
    assert worker["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert "TAILOR_WORKERS" in str(worker["deploy"]["replicas"])
    conditions = {name: dep["condition"] for name, dep in worker["depends_on"].items()}
    assert conditions == {
        "kafka": "service_healthy",
        "milvus": "service_healthy",
        "topics": "service_completed_successfully",
        "model": "service_completed_successfully",
    }
    assert doc["services"]["topics"]["command"] == ["topics"]
    assert doc["services"]["topics"]["environment"]["TAILOR_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_compose_data_lives_in_named_volumes() -> None:
    doc = _compose()
    if doc is None:
        return
    for name in ("kafka", "etcd", "minio", "milvus"):
        for mount in doc["services"][name]["volumes"]:
            assert mount.split(":", 1)[0] in doc["volumes"], mount


def test_dockerfile_pins_cpu_torch_and_runs_tailor() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "torch==2.13.0" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert text.index("torch==2.13.0") < text.index("pip install .")  # torch first
    assert re.search(r'^ENTRYPOINT \["tailor"\]$', text, re.MULTILINE)
    assert re.search(r'^CMD \["worker"\]$', text, re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+$", text, re.MULTILINE)


def test_dockerfile_copies_every_package() -> None:
    """A package added to pyproject.toml but not copied into the image would vanish from it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    text = DOCKERFILE.read_text(encoding="utf-8")
    for pkg in packages:
        assert re.search(rf"^COPY {pkg} ", text, re.MULTILINE), pkg
