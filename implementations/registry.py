"""The model registry: one entry per model, discovered from `implementations/models/`.

A new baseline joins by adding one module under `implementations/models/` that calls
`register_model(ModelSpec(...))` at import time; nothing else needs editing. The spec is the one place a
model is described: how to build it and count its FLOPs, its options and fidelity notes, and how it
appears in tables and figures (label, colour, marker, order, tags). External reference implementations
("peers", tag "peer") are registered the same way (`implementations/models/peers.py`).
"""
from __future__ import annotations

import importlib
import pkgutil
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from .config import ModelConfig


@dataclass(frozen=True)
class FidelityNote:
    """One place where a model departs from the paper, or where the paper is unknown here."""

    topic: str
    paper: str
    ours: str
    configurable: str = ""  # the model option(s) that change it, if any


@dataclass(frozen=True)
class ModelSpec:
    """What the suite knows about a model.

    build:   ModelConfig -> nn.Module with forward(tokens[B, T]) -> logits[B, T, vocab].
    options: every model option the model accepts, with its default (the only valid options).
    flops:   (ModelConfig, T) -> dict of forward FLOPs per token by component (see `flops.py`).
    """

    name: str
    description: str
    build: Callable[[ModelConfig], nn.Module]
    flops: Callable[[ModelConfig, int], dict[str, float]]
    options: dict[str, Any] = field(default_factory=dict)
    # the valid values of a text option (others are checked by their default's type: a bool stays a bool,
    # an int or None-by-default option takes a positive integer)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # an option whose valid values depend on the machine (e.g. a GPU kernel): value -> why it cannot run in this
    # process ('' when it can), asked by make_config after the value passed its other checks
    option_checks: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    causal: bool = True
    bidirectional: bool = True
    quadratic: bool = True  # attention cost grows with T^2
    length_multiple: Callable[[ModelConfig], int] | None = None  # None: any T works
    fidelity: tuple[FidelityNote, ...] = ()
    family: str = "transformer"  # "transformer" or "gau": how n_layers maps to layers
    order: int = 100  # position in list_models(), tables and figures (the paper's order for the seven)
    # how it appears in tables and figures: its name when no label is given; a stable colour and marker
    # picked from FALLBACK_* by its name when none is given
    label: str = ""
    color: str = ""
    marker: str = ""
    # "paper": one of the paper's seven models; "peer": an external implementation measured beside ours
    tags: tuple[str, ...] = ()
    equivalent: str = ""  # a peer: our model of the same architecture (its FLOP count is that model's)
    # a peer: the optional Python module it needs, and the name pip installs it by
    requires: str = ""
    pip_name: str = ""
    # overrides that make the model's structure visible at the tiny lengths of the conformance tests
    # (e.g. a chunk size below the test length), applied by tests/test_models.py only
    small_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def display_label(self) -> str:
        return self.label or self.name

    @property
    def display_color(self) -> str:
        return self.color or FALLBACK_COLORS[zlib.crc32(self.name.encode()) % len(FALLBACK_COLORS)]

    @property
    def display_marker(self) -> str:
        return self.marker or FALLBACK_MARKERS[zlib.crc32(self.name.encode()) % len(FALLBACK_MARKERS)]


FALLBACK_COLORS = ("#e377c2", "#8c564b", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
FALLBACK_MARKERS = ("X", "<", ">", "8", "H", "1")
PEER_PREFIX = "peer:"

_REGISTRY: dict[str, ModelSpec] = {}
_DISCOVERED = False


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if ("peer" in spec.tags) != spec.name.startswith(PEER_PREFIX):
        raise ValueError(f"model {spec.name!r}: peers, and only they, are named {PEER_PREFIX}<name> and tagged 'peer'")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove a model registered at run time (tests of a throwaway baseline)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    from . import models

    for info in sorted(pkgutil.iter_modules(models.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{models.__name__}.{info.name}")
    _DISCOVERED = True


def list_models(tag: str | None = None, *, peers: bool = False) -> list[str]:
    """Names of the registered models in their order (then by name): ours, or with `peers` the external
    implementations too; with `tag`, only those carrying it (e.g. "paper": the paper's seven)."""
    _discover()
    names = [n for n, s in _REGISTRY.items() if (peers or "peer" not in s.tags) and (tag is None or tag in s.tags)]
    return sorted(names, key=lambda n: (_REGISTRY[n].order, n))


def get_spec(name: str) -> ModelSpec:
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}"
                         + (f"; valid peers: {', '.join(list_models('peer', peers=True))}"
                            if name.startswith(PEER_PREFIX) else ""))
    return _REGISTRY[name]


def describe(name: str) -> ModelSpec | None:
    """The spec of a registered model or peer, None for a name the registry does not know (e.g. a
    model of an old results file): tables and figures then show the name with fallback styling."""
    _discover()
    return _REGISTRY.get(str(name))


def is_peer(name: str) -> bool:
    """An external implementation (registration keeps the peer: prefix and the 'peer' tag together)."""
    return str(name).startswith(PEER_PREFIX)


def make_config(name: str, *, vocab_size: int, d_model: int, n_layers: int, max_len: int,
                causal: bool = True, **options: Any) -> ModelConfig:
    """Validate the arguments of `build_model` and return the full config."""
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(sorted(spec.options)) or "(none)"
        raise ValueError(f"unknown model option(s) {unknown} for model {name!r}; valid options: {valid}")
    for key, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                       ("max_len", max_len)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
    if causal and not spec.causal:
        raise ValueError(f"model {name!r} has no causal mode")
    if not causal and not spec.bidirectional:
        raise ValueError(f"model {name!r} has no bidirectional mode")
    for key, value in options.items():
        problem = option_problem(spec, key, value)
        if problem:
            raise ValueError(f"model option {key}={value!r} for model {name!r}: {problem}")
    options = {**spec.options, **options}
    return ModelConfig(name=name, vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                       max_len=max_len, causal=causal, options=options)


def option_problem(spec: ModelSpec, key: str, value: Any) -> str:
    """Why a value is not valid for a model option ('' when it is)."""
    problem = _value_problem(spec, key, value)
    if problem or key not in spec.option_checks:
        return problem
    return spec.option_checks[key](value)


def _value_problem(spec: ModelSpec, key: str, value: Any) -> str:
    default = spec.options[key]
    if key in spec.choices:
        return "" if value in spec.choices[key] else f"valid values: {', '.join(map(str, spec.choices[key]))}"
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else "must be true or false"
    if default is None or isinstance(default, int):
        if value is None and default is None:
            return ""
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return "" if ok else "must be a positive integer" + (" (or left unset)" if default is None else "")
    if isinstance(default, str):
        return "" if isinstance(value, str) else "must be text"
    return ""


def build_model(name: str, *, vocab_size: int, d_model: int, n_layers: int, max_len: int,
                causal: bool = True, **options: Any) -> nn.Module:
    """Build a registered model. `n_layers` counts Transformer-block equivalents."""
    return build_from_config(make_config(name, vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                                         max_len=max_len, causal=causal, **options))


def build_from_config(cfg: ModelConfig) -> nn.Module:
    """Build a model from a config that `make_config` made (and so checked)."""
    model = get_spec(cfg.name).build(cfg)
    model.config = cfg
    return model


def check_length(name: str, cfg: ModelConfig, T: int) -> None:
    """Raise ValueError when a model cannot run a sequence of length T."""
    spec = get_spec(name)
    if T > cfg.max_len:
        raise ValueError(f"{name}: context length {T} exceeds max_len {cfg.max_len}")
    if spec.length_multiple is not None:
        m = spec.length_multiple(cfg)
        if T % m:
            raise ValueError(f"{name}: context length {T} must be a multiple of {m}")
