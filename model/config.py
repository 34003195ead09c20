"""Typed training configuration, and the recipes that fill it.

A recipe (``model/recipes/NAME.toml``) holds every value one shipped or
reference model was trained with; ``python -m model train --recipe NAME``
turns it into a ``TrainConfig`` and trains. Each objective has a settings
dataclass of its own, so a value that only one objective reads lives only
there. Nothing here imports torch, so ``--help`` and recipe errors are fast.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

RECIPES = Path(__file__).resolve().parent / "recipes"


@dataclass(frozen=True)
class NetworkConfig:
    """Which network to build (``model.networks.ARCHITECTURES``) and its options."""

    arch: str
    input_size: int | None = None  # texture_net: 100 (default) or 200 (full resolution)
    fine_stage1: bool = False  # texture_net: first stage at 50x50 instead of 25x25


@dataclass(frozen=True)
class PairsConfig:
    """The paper's objective: random pairs, contrastive loss with a margin."""

    name: ClassVar[str] = "pairs"
    batch_size: int = 32  # pairs per batch
    margin: float = 2.0


@dataclass(frozen=True)
class ViewsConfig:
    """Two augmented views per image; instance discrimination plus class contrast."""

    name: ClassVar[str] = "views"
    per_class: int = 32  # images of each class in a batch, two views each
    temperature: float = 0.1
    class_weight: float = 1.0  # weight of the supervised (same class) term
    min_crop: float = 0.35  # smallest random crop, as a fraction of the image area
    shading: float = 0.0  # uneven light: a smooth field of up to exp(+-shading); 0: none
    blur: float = 0.0  # out of focus: Gaussian sigma drawn up to this, in pixels; 0: none
    synthetic_classes: int = 0  # procedurally generated texture classes per batch
    synthetic_per_class: int = 8  # images of each synthetic class


@dataclass(frozen=True)
class DistillConfig:
    """A one-pass student learns the codes its teacher gives from its views."""

    name: ClassVar[str] = "distill"
    teacher: Path  # the teacher's checkpoint
    init_from_teacher: bool = False  # start from the teacher's weights (same shapes)
    per_class: int = 32  # images of each class in a batch
    min_crop: float = 0.35
    shading: float = 0.0
    synthetic_classes: int = 0
    synthetic_per_class: int = 8


@dataclass(frozen=True)
class ClassifyConfig:
    """Cross-entropy over the training classes: the supervised CNN baseline."""

    name: ClassVar[str] = "classify"
    batch_size: int = 32


ObjectiveConfig = PairsConfig | ViewsConfig | DistillConfig | ClassifyConfig
OBJECTIVES: dict[str, type[ObjectiveConfig]] = {
    c.name: c for c in (PairsConfig, ViewsConfig, DistillConfig, ClassifyConfig)
}


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    train_classes: list[str]
    out: Path
    network: NetworkConfig
    objective: ObjectiveConfig
    epochs: int = 100
    lr: float = 0.0005
    weight_decay: float = 0.0  # > 0: AdamW instead of Adam
    schedule: str = "constant"  # "constant" or "onecycle" (warm-up, then cosine decay)
    # how the trained network looks at an image when it embeds (``model.networks.VIEWS``)
    inference_views: str = "whole"
    center: bool = False  # subtract the training images' mean code at inference
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    recipe: str = ""  # the recipe the values came from, recorded in the checkpoint
    command: str = ""
    max_batches: int | None = None  # cap batches per epoch (dry runs, tests)


def recipe_name(recipe: str) -> str:
    """``default`` for ``default`` and for ``path/to/default.toml``."""
    return Path(recipe).stem if recipe.endswith(".toml") else recipe


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def recipe_path(name: str) -> Path:
    """A recipe by name (``default``) or by the path of a TOML file."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise FileNotFoundError(f"recipe file not found: {path}")
        return path
    path = RECIPES / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"no recipe {name!r}; known: {', '.join(recipe_names())}, or a .toml path")
    return path


def load_recipe(name: str) -> dict[str, Any]:
    path = recipe_path(name)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML reads it (``1.0``, ``true``, ``[\"a\", \"b\"]``), else text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(recipe: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` settings, KEY dotted into the recipe's tables (``distill.shading``)."""
    recipe = {k: dict(v) if isinstance(v, dict) else v for k, v in recipe.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE (e.g. views.shading=1.0), not {item!r}")
        *tables, leaf = key.strip().split(".")
        target = recipe
        for table in tables:
            target = target.setdefault(table, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {key}: {table!r} is a value, not a table")
        target[leaf] = parse_value(text.strip())
    return recipe


def coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` checked against a dataclass field's type (ints pass as floats)."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType):
        if value is None and type(None) in args:
            return None
        return coerce(value, next(a for a in args if a is not type(None)), where)
    if typing.get_origin(kind) is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, not {value!r}")
        return [coerce(v, args[0], where) for v in value]
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ValueError(f"{where} must be {getattr(kind, '__name__', kind)}, not {value!r}")
    return value


def build(cls: type, values: dict[str, Any], where: str, **given: Any) -> Any:
    """A dataclass from a recipe table: unknown keys are errors, not silently dropped."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    missing = [
        f.name
        for f in fields(cls)
        if f.init and f.name not in values and f.name not in given
        if f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ValueError(f"{where}: {', '.join(missing)} must be given")
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs, **given)


def config_from_recipe(recipe: dict[str, Any], name: str = "") -> TrainConfig:
    """The ``TrainConfig`` a recipe (after overrides) describes."""
    values = dict(recipe)
    values.pop("description", None)
    objective = values.pop("objective", None)
    if objective not in OBJECTIVES:
        raise ValueError(
            f"recipe {name!r}: objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}"
        )
    network = build(NetworkConfig, values.pop("network", {}), "network")
    settings = build(OBJECTIVES[objective], values.pop(objective, {}), objective)
    stray = [k for k in OBJECTIVES if k in values]
    if stray:
        raise ValueError(f"recipe {name!r}: table {stray[0]} belongs to another objective")
    config = build(TrainConfig, values, "recipe", network=network, objective=settings)
    return replace(config, recipe=name or config.recipe)


def plain(value: Any) -> Any:
    """A config as JSON holds it: dataclasses as dicts, paths as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
