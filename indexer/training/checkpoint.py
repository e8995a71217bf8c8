"""Where a run can go back to: in memory, the last good epoch (a roll-back after a
divergence) and the best validated weights; on disk, a checkpoint to resume from after
an interruption.

In memory, tensors are copied into buffers allocated once: a ViT's weights and AdamW's
two moments are copied in a fraction of a second, where writing them to disk (fsynced)
takes seconds, which on small data sets was more than an epoch's training.

On disk, a checkpoint is a folder of its own (weights, optimizer state, best weights),
written whole before `state.json` names it; `state.json` is replaced atomically and
folders it no longer names are removed after. A kill at any moment leaves the previous
state naming a complete folder, never a mix of two epochs' files.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path

from indexer.training.artifacts import save_tensors
from search.diskfiles import atomic_write, replacing
from search.models.spec import read_json_object

STATE = "state.json"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.pt"


class Weights:
    """A copy of a model's weights, refreshed in place."""

    def __init__(self) -> None:
        self.tensors: dict | None = None

    def take(self, model) -> None:
        self.tensors = _copy_into(self.tensors, model.state_dict())

    def give(self, model) -> None:
        model.load_state_dict(self.tensors)


class Snapshot:
    """The model, the optimizer's per-parameter state and the run's state at the last
    good epoch."""

    def __init__(self) -> None:
        self.weights = Weights()
        self.moments: dict = {}
        self.state: dict = {}

    def take(self, model, optimizer, state: dict) -> None:
        self.weights.take(model)
        self.moments = {
            p: _copy_into(self.moments.get(p), s) for p, s in optimizer.state.items() if s
        }
        self.state = copy.deepcopy(state)

    def restore(self, model, optimizer) -> dict:
        self.weights.give(model)
        optimizer.state.clear()
        for p, s in self.moments.items():
            # Copies: the optimizer updates its state in place, the snapshot must stay.
            optimizer.state[p] = _copy_into(None, s)
        return copy.deepcopy(self.state)


def _copy_into(buffers: dict | None, tensors: dict) -> dict:
    """`tensors` copied into `buffers` where shapes match, else into new tensors."""
    import torch

    out = {}
    with torch.no_grad():
        for k, v in tensors.items():
            if not isinstance(v, torch.Tensor):
                out[k] = v
                continue
            old = (buffers or {}).get(k)
            if old is not None and old.shape == v.shape and old.dtype == v.dtype:
                out[k] = old.copy_(v)
            else:
                out[k] = v.detach().clone()
    return out


class Checkpoints:
    def __init__(self, folder: Path, fingerprint: dict) -> None:
        self.folder = folder
        # As JSON would give it back, so that a stored one compares equal.
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def read(self) -> dict | None:
        """The saved state of a run with the same fingerprint, or None."""
        state = read_json_object(self.folder / STATE)
        if any(state.get(k) != v for k, v in self.fingerprint.items()):
            return None
        if not (self.folder / state.get("current", "") / OPTIMIZER).is_file():
            return None
        return state

    def write(self, tag: str, model, optimizer, best: Weights, state: dict) -> None:
        """Weights, optimizer state and best weights into folder `tag`, then the state
        naming it. A write that fails (a full disk) leaves no part of itself: the state
        named before, if any, stays whole."""
        import torch

        named = self.read()
        target = self.folder / tag
        try:
            shutil.rmtree(target, ignore_errors=True)
            save_tensors(model.state_dict(), target / WEIGHTS)
            # Through save_tensors too: safetensors' own writer reports a full disk as its
            # own error, not the OSError the caller turns into a one-line message.
            save_tensors(best.tensors, target / BEST)
            with replacing(target / OPTIMIZER) as tmp:
                # Serialised in memory, written by Python: torch's own file writer reports
                # a full disk as a bare RuntimeError ("iostream error"), Python as ENOSPC.
                buffer = io.BytesIO()
                torch.save(optimizer.state_dict(), buffer)
                tmp.write_bytes(buffer.getbuffer())
            state = {**self.fingerprint, **state, "current": tag}
            atomic_write(self.folder / STATE, json.dumps(state, indent=1, default=str).encode())
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if named is None:
                self.remove()
            raise
        for entry in self.folder.iterdir():
            if entry.name not in (STATE, tag):
                shutil.rmtree(entry, ignore_errors=True)

    def restore(self, state: dict, model, optimizer, best: Weights, device: str) -> None:
        import torch
        from safetensors.torch import load_file

        folder = self.folder / state["current"]
        model.load_state_dict(load_file(folder / WEIGHTS, device=device))
        optimizer.load_state_dict(
            torch.load(folder / OPTIMIZER, map_location=device, weights_only=True)
        )
        best.tensors = load_file(folder / BEST, device=device)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
