"""Which model fills which role: model specs and the two profiles.

A *role* is one job in the pipeline (``"detector"``, ``"segmenter"``, ``"embedder"``); a
*profile* picks one model per role (``"cpu"``: the small variants, ``"gpu"``: the larger ones).
Any role can be overridden with a Hugging Face hub id (``"facebook/dinov2-small"``) or a local
folder holding a ``save_pretrained`` model (``"/srv/models/florence"``).

This module is pure data (no torch, no network), so the CLI can list models cheaply.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

ROLES: tuple[str, ...] = ("detector", "segmenter", "embedder")

# config.json ``model_type`` values each role accepts (transformers-native classes only).
ROLE_MODEL_TYPES: dict[str, frozenset[str]] = {
    "detector": frozenset({"florence2"}),
    "segmenter": frozenset({"sam2", "sam2_video"}),
    "embedder": frozenset({"dinov2", "dinov2_with_registers"}),
}

# Version labels of DINOv2's released checkpoints by hidden size; the registry stores one with
# every vector, and vectors of different versions are never compared.
DINOV2_VERSIONS = {384: "dinov2-small", 768: "dinov2-base", 1024: "dinov2-large", 1536: "dinov2-giant"}


def embedding_version(hidden_size: int, pooling: str = "cls") -> str:
    """The version label of a DINOv2 embedding: ``"dinov2-base"`` for 768, ``"dinov2-32d"``
    for a size no released checkpoint has; ``"+mean"`` appended for ``cls+mean`` pooling."""
    base = DINOV2_VERSIONS.get(int(hidden_size), f"dinov2-{int(hidden_size)}d")
    return base + ("+mean" if pooling == "cls+mean" else "")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """One model for one role.

    Attributes:
        role: ``"detector"``, ``"segmenter"`` or ``"embedder"``.
        name: short human name (``"florence-2-base"``), also used as the model version label.
        hub_id: Hugging Face repo id (``"florence-community/Florence-2-base"``); for a local
            override it is the folder's name.
        revision: a hub branch, tag or commit; None means the default branch.
        local_dir: a folder to load from instead of the hub (set by a path override).
        profile: the profile this spec came from (used in error messages), or None.
    """

    role: str
    name: str
    hub_id: str
    revision: str | None = None
    local_dir: Path | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {self.role!r}")
        if not self.hub_id:
            raise ValueError("hub_id: expected a repo id like 'owner/name', got an empty string")

    @property
    def folder_name(self) -> str:
        """The folder name used under the weights dir: ``owner--name`` (like the HF cache)."""
        return self.hub_id.replace("/", "--")


PROFILES: dict[str, dict[str, ModelSpec]] = {
    "cpu": {
        "detector": ModelSpec("detector", "florence-2-base", "florence-community/Florence-2-base", profile="cpu"),
        "segmenter": ModelSpec("segmenter", "sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny", profile="cpu"),
        "embedder": ModelSpec("embedder", "dinov2-base", "facebook/dinov2-base", profile="cpu"),
    },
    "gpu": {
        "detector": ModelSpec("detector", "florence-2-large", "florence-community/Florence-2-large", profile="gpu"),
        "segmenter": ModelSpec(
            "segmenter", "sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-base-plus", profile="gpu"
        ),
        "embedder": ModelSpec("embedder", "dinov2-base", "facebook/dinov2-base", profile="gpu"),
    },
}


def looks_like_path(value: str) -> bool:
    """True when ``value`` names a local folder rather than a hub id.

    An existing path always counts as a folder; otherwise absolute paths, ``./``, ``../`` and
    ``~`` prefixes, and Windows drive letters do. ``owner/name`` is taken as a hub id.
    """
    if Path(value).expanduser().exists():
        return True
    return value.startswith(("/", "./", "../", "~", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", value))


def spec_from_override(role: str, value: str, *, profile: str | None = None) -> ModelSpec:
    """A spec for ``role`` from an override string: a hub id (``owner/name[@revision]``) or a folder.

    Raises:
        ValueError: the string is neither an existing-looking path nor ``owner/name``.
    """
    value = value.strip()
    if looks_like_path(value):
        folder = Path(value).expanduser().resolve()
        return ModelSpec(role, folder.name, folder.name, local_dir=folder, profile=profile)
    hub_id, _, revision = value.partition("@")
    if not _HUB_ID.match(hub_id):
        raise ValueError(
            f"{role} override: expected a hub id like 'owner/name' (optionally '@revision') or a "
            f"local folder path, got {value!r}"
        )
    return ModelSpec(role, hub_id.split("/")[-1].lower(), hub_id, revision or None, profile=profile)


def get_profile(name: str = "cpu", overrides: dict[str, str | ModelSpec] | None = None) -> dict[str, ModelSpec]:
    """The specs of profile ``name`` with per-role overrides applied.

    Args:
        name: ``"cpu"`` or ``"gpu"``.
        overrides: role -> hub id, folder path or a ready ``ModelSpec``.

    Raises:
        ValueError: unknown profile or role.
    """
    if name not in PROFILES:
        raise ValueError(f"profile: expected one of {sorted(PROFILES)}, got {name!r}")
    specs = dict(PROFILES[name])
    for role, value in (overrides or {}).items():
        if role not in ROLES:
            raise ValueError(f"override role: expected one of {ROLES}, got {role!r}")
        if isinstance(value, ModelSpec):
            specs[role] = value if value.role == role else replace(value, role=role)
        else:
            specs[role] = spec_from_override(role, value, profile=name)
    return specs


def get_spec(role: str, profile: str = "cpu", override: str | ModelSpec | None = None) -> ModelSpec:
    """One role's spec from a profile, optionally overridden (see ``get_profile``)."""
    if role not in ROLES:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    return get_profile(profile, {role: override} if override is not None else None)[role]


def known_specs() -> list[ModelSpec]:
    """Every spec named by any profile, each hub id once (profile order)."""
    seen: dict[str, ModelSpec] = {}
    for specs in PROFILES.values():
        for spec in specs.values():
            seen.setdefault(spec.hub_id, spec)
    return list(seen.values())
