"""The model in the admin process: loaded on first use, once per process."""

from __future__ import annotations

import threading
from typing import Any

from core.references import ReferenceCache, register_model_version
from core.settings import get_settings

_lock = threading.Lock()
_state: dict[str, Any] = {}


def get_embedder() -> Any:
    with _lock:
        if "embedder" not in _state:
            from model import load_embedder

            settings = get_settings()
            _state["embedder"] = load_embedder(
                settings.model_checkpoint,
                device=settings.model_device,
                threshold=settings.match_threshold,
            )
        return _state["embedder"]


def get_frame_version() -> str:
    """The version of the model whose features build good-surface memories, as the
    workers load it: camera thresholds and memories belong to it."""
    embedder = get_embedder()
    with _lock:
        if "frame_version" not in _state:
            from model.frames import load_frame_inspector

            settings = get_settings()
            try:
                version = load_frame_inspector(
                    settings.frame_checkpoint, settings.model_device, fallback=embedder
                ).version
            except ValueError:  # no feature maps to read: the whole-image rule only
                version = embedder.version
            _state["frame_version"] = version
        return str(_state["frame_version"])


def get_reference_cache(store: Any, session: Any) -> ReferenceCache:
    """The active references embedded by this process's model, refreshed on change."""
    embedder = get_embedder()
    with _lock:
        cache = _state.get("references")
        if cache is None:
            cache = _state["references"] = ReferenceCache(embedder, store)
            first = True
        else:
            first = False
    if first:
        register_model_version(session, embedder)
    return cache
