"""Random-weight ViT-B-32-256 for both tools: safetensors for imgsearch, ONNX files laid
out the way rclip loads them from RCLIP_DATADIR (no weights can be downloaded here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

ARCH = "ViT-B-32-256"
RCLIP_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"


class _Visual(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode_image(x)


class _Textual(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return self.model.encode_text(tokens)


def export(out: Path, seed: int = 0) -> Path:
    """Write out/weights.safetensors and out/rclip/... ; returns the weights file."""
    weights = out / "weights.safetensors"
    datadir = out / "rclip"
    onnx_dir = datadir / RCLIP_SUBDIR
    if weights.exists() and (onnx_dir / "textual.onnx").exists():
        return weights
    torch.manual_seed(seed)
    model = open_clip.create_model(ARCH)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    onnx_dir.mkdir(parents=True, exist_ok=True)
    axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    # nn.MultiheadAttention's fused fast path has no ONNX translation; the plain path
    # computes the same thing.
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        torch.onnx.export(
            _Visual(model),
            (torch.randn(2, 3, 256, 256),),
            onnx_dir / "visual.onnx",
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=axes,
            dynamo=False,
        )
        tokens = open_clip.get_tokenizer(ARCH)(["a photo", "of a cat"])
        torch.onnx.export(
            _Textual(model),
            (tokens,),
            onnx_dir / "textual.onnx",
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=axes,
            dynamo=False,
        )
    vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    (datadir / "tokenizer").mkdir(parents=True, exist_ok=True)
    shutil.copy(vocab, datadir / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz")
    return weights
