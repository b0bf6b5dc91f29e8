"""Versioned prompt templates (``prompts/<version>.txt``) rendered into chat messages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from schemas.attributes import FlatAttributes
from schemas.events import ProductCreated

PROMPT_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT = "re_v1"
# Ratios are taken against the garment's widest reference girth: chest for tops, hip for bottoms.
_REFERENCES = ("chest_size", "hip_size")
PLACEHOLDERS = {"title", "category", "description", "std", "measurements", "ratios"}


def _number(values: list[str]) -> float | None:
    if len(values) != 1:
        return None
    try:
        return float(values[0])
    except ValueError:
        return None


def split_measurements(std: FlatAttributes) -> tuple[FlatAttributes, dict[str, float]]:
    """STD attributes -> (descriptive attributes, numeric measurements like top.chest_size)."""
    attrs: FlatAttributes = {}
    sizes: dict[str, float] = {}
    for key, values in std.items():
        number = _number(values)
        if number is not None and "." in key:
            sizes[key] = number
        else:
            attrs[key] = values
    return attrs, sizes


def ratios(sizes: dict[str, float]) -> dict[str, float]:
    """Each measurement over its group's reference girth (``top.hem_size/chest_size``):
    the geometry rules in the prompt are stated as such ratios, which small models
    compute badly themselves."""
    out: dict[str, float] = {}
    groups = {key.split(".", 1)[0] for key in sizes}
    for group in sorted(groups):
        ref_name = next((r for r in _REFERENCES if sizes.get(f"{group}.{r}")), None)
        if ref_name is None:
            continue
        ref = sizes[f"{group}.{ref_name}"]
        for key, value in sizes.items():
            name = key.split(".", 1)[-1]
            if key.startswith(f"{group}.") and name != ref_name:
                out[f"{group}.{name}/{ref_name}"] = round(value / ref, 2)
    return out


def _lines(items: dict[str, object]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in items.items()) or "(none)"


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: Template
    user: Template
    digest: str  # of the file text: an edited prompt never reuses answers cached for the old one

    @property
    def fingerprint(self) -> str:
        return f"{self.version}@{self.digest[:12]}"

    def messages(self, product: ProductCreated) -> list[dict[str, str]]:
        attrs, sizes = split_measurements(product.attributes.std())
        fields = {
            "title": product.title,
            "category": ", ".join(attrs.get("category", [])),
            "description": product.description.strip() or "(none)",
            "std": _lines({k: ", ".join(v) for k, v in attrs.items() if k != "category"}),
            "measurements": _lines(sizes),
            "ratios": _lines(ratios(sizes)),
        }
        # Substituted values are not parsed again, so a "$" in a product's text stays data.
        return [
            {"role": "system", "content": self.system.substitute(fields)},
            {"role": "user", "content": self.user.substitute(fields)},
        ]


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = line.strip()
        if header in ("[system]", "[user]"):
            current = sections.setdefault(header[1:-1], [])
        elif current is not None:
            current.append(line)
        elif header and not header.startswith("#"):
            raise ValueError(f"prompt text before the first [system]/[user] section: {line!r}")
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def load_prompt(version: str = DEFAULT_PROMPT, directory: Path = PROMPT_DIR) -> PromptTemplate:
    text = (directory / f"{version}.txt").read_text(encoding="utf-8")
    parts = _sections(text)
    if set(parts) != {"system", "user"}:
        raise ValueError(f"prompt {version} needs a [system] and a [user] section, has {sorted(parts)}")
    system, user = Template(parts["system"]), Template(parts["user"])
    unknown = set(system.get_identifiers() + user.get_identifiers()) - PLACEHOLDERS
    if unknown or not (system.is_valid() and user.is_valid()):
        raise ValueError(f"prompt {version}: unknown or malformed placeholders {sorted(unknown)}")
    return PromptTemplate(version, system, user, hashlib.sha256(text.encode()).hexdigest())
