"""Checkpoints: a state dict plus plain metadata, loadable with ``weights_only=True``.

Never pickles a module: ``torch.load`` of a pickled model runs arbitrary code.
Metadata holds only str/int/float/bool/None/lists/dicts, which the safe
unpickler accepts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.networks import SiameseNetwork, build_network, inference_network

FORMAT_VERSION = 1
REQUIRED_META = ("arch", "arch_kwargs", "input_size", "threshold")


def save_checkpoint(path: str | Path, network: SiameseNetwork, meta: dict[str, Any]) -> Path:
    """Write weights and metadata atomically (temporary file, then rename).

    A network wrapped for inference is saved as its tower; ``meta["views"]``
    and ``meta["center"]`` rebuild the wrappers.
    """
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {', '.join(missing)}")
    network = getattr(network, "tower", network)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    # A JSON round trip leaves only plain types, which the safe unpickler accepts.
    plain_meta = json.loads(json.dumps(meta))
    payload = {"format": FORMAT_VERSION, "state_dict": state, "meta": plain_meta}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[SiameseNetwork, dict[str, Any]]:
    """Rebuild the network a checkpoint describes and load its weights (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a checkpoint of format {FORMAT_VERSION}")
    meta = payload["meta"]
    network = build_network(meta["arch"], **meta["arch_kwargs"])
    network.load_state_dict(payload["state_dict"])
    center = meta.get("center")
    network = inference_network(
        network, meta.get("views", "whole"), None if center is None else torch.tensor(center)
    )
    network.eval()
    return network, meta
