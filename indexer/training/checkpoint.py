"""Per-epoch checkpoints, so an interrupted run resumes and a diverged one rolls back.

Each epoch's checkpoint is a folder of its own (weights, optimizer state), written whole
before `state.json` names it; `state.json` is replaced atomically, and folders it no
longer names are removed after. A kill at any moment leaves the previous state naming a
complete folder, never a mix of two epochs' files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from indexer.training.artifacts import save_tensors
from search.diskfiles import atomic_write, replacing

STATE = "state.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"


class Checkpoints:
    def __init__(self, folder: Path, fingerprint: dict) -> None:
        self.folder = folder
        # As JSON would give it back, so that a stored one compares equal.
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def read(self) -> dict | None:
        """The saved state of a run with the same fingerprint, or None."""
        try:
            state = json.loads((self.folder / STATE).read_text())
        except (OSError, ValueError):
            return None
        if any(state.get(k) != v for k, v in self.fingerprint.items()):
            return None
        if not (self.folder / state["current"] / OPTIMIZER).is_file():
            return None
        return state

    def write(self, tag: str, model, optimizer, state: dict) -> None:
        """Weights and optimizer into folder `tag`, then the state naming it (plus the
        best epoch's folder, which is kept)."""
        import torch

        target = self.folder / tag
        shutil.rmtree(target, ignore_errors=True)
        save_tensors(model, target / WEIGHTS)
        with replacing(target / OPTIMIZER) as tmp:
            torch.save(optimizer.state_dict(), tmp)
        state = {**self.fingerprint, **state, "current": tag}
        atomic_write(self.folder / STATE, json.dumps(state, indent=1, default=str).encode())
        keep = {STATE, tag, state.get("best")}
        for entry in self.folder.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)

    def restore(self, state: dict, model, optimizer, device: str) -> None:
        import torch
        from safetensors.torch import load_file

        folder = self.folder / state["current"]
        model.load_state_dict(load_file(folder / WEIGHTS, device=device))
        optimizer.load_state_dict(
            torch.load(folder / OPTIMIZER, map_location=device, weights_only=True)
        )

    def best_weights(self, state: dict, device: str) -> dict:
        from safetensors.torch import load_file

        return load_file(self.folder / state["best"] / WEIGHTS, device=device)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
