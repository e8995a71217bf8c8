"""torch → ONNX, once per model, checked against torch before anything uses it.

Imports torch: called where the model is loaded with torch anyway (the end of an `index`
run). Each tower is exported in fp32 (TorchScript exporter), optimised by ONNX Runtime
and saved optimised with its weights beside it (loading then takes a fraction of a
second), then run on a set of texts and images beside the torch model: a tower whose
vectors fall under cosine 0.999 to torch's is refused, and queries keep using torch.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search.models.encoder import ClipEncoder, load_encoder
from search.models.onnx import store
from search.models.onnx.check import MIN_COSINE, check_pixels, worst_cosine
from search.models.onnx.encoder import OnnxEncoder
from search.models.onnx.store import Export, ImageTower, TextTower
from search.models.spec import ModelSource, weights_digest, weights_file
from search.models.tokenizer import ClipTokenizer

log = logging.getLogger(__name__)

OPSET = 17
# What the check embeds: lengths from 0 words to past the context length, punctuation,
# accents, CJK and emoji, upper case, and a batch of mixed lengths (trimmed together).
CHECK_TEXTS = [
    "",
    "a dog in the snow",
    "dog asleep on a red sofa",
    "A PHOTO OF A CAT!!!",
    "sunset over the sea, with boats and a lighthouse in the distance",
    "crème brûlée at the café — naïve façade",
    "東京の夜景",
    "birthday party 🎂🎉 with friends",
    "2:cat +sofa -dog 3.14 #holiday @home",
    " ".join(["a long caption that goes on and on"] * 12),
]


def export_model(
    source: ModelSource,
    *,
    models_dir: Path,
    cache_dir: Path,
    encoder: ClipEncoder | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> Export | None:
    """Export `source` into the library's cache (`encoder`: the model already loaded, used
    when it is the fp32 one on the CPU); the export, or None when it was refused (the
    reason is recorded, so later runs do not try again). `progress(1)` after each tower."""
    if (found := store.find(cache_dir, source.model_id)) is not None:
        return found
    import onnxruntime

    started = time.perf_counter()
    if encoder is None or encoder.precision != "fp32" or encoder.device != "cpu":
        encoder = load_encoder(source, "cpu", "fp32")  # the export is the fp32 model
    staging = store.staging_folder(cache_dir, source.model_id)
    reasons: list[str] = []
    try:
        text = _export_text(encoder, staging, reasons)
        progress(1)
        image = _export_image(encoder, staging, reasons)
        progress(1)
        file = weights_file(source.spec, models_dir)
        export = Export(
            model_id=source.model_id,
            folder=staging,
            dim=encoder.dim,
            source={**asdict(source), "weights": str(source.weights) if source.weights else None},
            weights_digest=weights_digest(file, cache_dir) if file else None,
            text=text[0] if text else None,
            image=image[0] if image else None,
            min_cosine={"text": text[1] if text else None, "image": image[1] if image else None},
            runtime=onnxruntime.__version__,
        )
        if text is None and image is None:
            raise _Refused("; ".join(reasons))
        store.write_manifest(export)
        folder = store.publish(staging, cache_dir, source.model_id)
    except _Refused as exc:
        store.record_refusal(cache_dir, source.model_id, str(exc))
        log.warning("not exporting %s to ONNX: %s", source.model_id, exc)
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once published
    for reason in reasons:
        log.warning("ONNX export of %s: %s", source.model_id, reason)
    log.info("exported %s to ONNX in %.1f s", source.model_id, time.perf_counter() - started)
    return store.find(cache_dir, source.model_id) or Export(**{**vars(export), "folder": folder})


class _Refused(Exception):
    pass


def _export_text(
    encoder: ClipEncoder, folder: Path, reasons: list[str]
) -> tuple[TextTower, float] | None:
    reason = _tokenizer_mismatch(encoder.tokenizer)
    if reason:
        reasons.append(f"text tower not exported: {reason}")
        return None
    model = encoder.model
    context = int(encoder.tokenizer.context_length)
    trim = _trimmable(model)
    module = _TrimmedText(model) if trim else _FullText(model)
    sample = torch.from_numpy(ClipTokenizer(context_length=context)(["a photo", "of a cat"]))
    if trim:  # tracing runs the model once: on 5 positions, not 77
        sample = sample[:, : int(sample.argmax(dim=1).max()) + 1]
    axes = {0: "batch", 1: "length"} if trim else {0: "batch"}
    try:
        _to_onnx(module, sample, folder / "text.raw.onnx", "tokens", axes)
        _optimise(folder / "text.raw.onnx", folder / "text.onnx")
        tower = TextTower("text.onnx", context, trim)
        onnx_encoder = OnnxEncoder.for_towers(folder, tower, None, encoder.dim)
        # As one batch (cut to its longest text) and one text at a time (each cut to
        # its own length), as queries run.
        together = onnx_encoder.encode_texts(CHECK_TEXTS)
        alone = np.concatenate([onnx_encoder.encode_texts([t]) for t in CHECK_TEXTS])
    except Exception as exc:  # noqa: BLE001 - any exporter failure means "use torch"
        _discard(folder, "text", f"not exported: {type(exc).__name__}: {exc}", reasons)
        return None
    torch_vecs = encoder.encode_texts(CHECK_TEXTS)
    worst = min(worst_cosine(v, torch_vecs) for v in (together, alone))
    if worst < MIN_COSINE:
        _discard(folder, "text", f"refused: cosine to torch {worst:.5f} < {MIN_COSINE}", reasons)
        return None
    return tower, worst


def _export_image(
    encoder: ClipEncoder, folder: Path, reasons: list[str]
) -> tuple[ImageTower, float] | None:
    size = encoder.image_size
    module = _Image(encoder.model, encoder._mean, encoder._std)
    sample = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    pixels = check_pixels(size)
    try:
        _to_onnx(module, sample, folder / "image.raw.onnx", "pixels", {0: "batch"})
        _optimise(folder / "image.raw.onnx", folder / "image.onnx")
        tower = ImageTower("image.onnx", size, encoder.resize_mode, encoder.resample)
        onnx_vecs = OnnxEncoder.for_towers(folder, None, tower, encoder.dim).encode_pixels(pixels)
    except Exception as exc:  # noqa: BLE001 - any exporter failure means "use torch"
        _discard(folder, "image", f"not exported: {type(exc).__name__}: {exc}", reasons)
        return None
    torch_vecs = encoder.encode_pixels(pixels)
    worst = worst_cosine(onnx_vecs, torch_vecs)
    if worst < MIN_COSINE:
        _discard(folder, "image", f"refused: cosine to torch {worst:.5f} < {MIN_COSINE}", reasons)
        return None
    return tower, worst


def _discard(folder: Path, tower: str, why: str, reasons: list[str]) -> None:
    """Delete a tower's files ("text.*", "image.*") and note why it is not exported."""
    for path in folder.glob(f"{tower}.*"):
        path.unlink(missing_ok=True)
    reasons.append(f"{tower} tower {why}")


def _tokenizer_mismatch(tokenizer) -> str | None:
    """Why search.models.tokenizer would not give this tokenizer's ids (None: it would)."""
    from open_clip.tokenizer import SimpleTokenizer

    if type(tokenizer) is not SimpleTokenizer:
        return f"{type(tokenizer).__name__} is not open_clip's CLIP tokenizer"
    clean = getattr(tokenizer, "clean_fn", None)
    if getattr(clean, "__name__", "") != "_clean_lower" or tokenizer.reduction_fn is not None:
        return "the tokenizer cleans or reduces text in a non-default way"
    if tokenizer.vocab_size != 49408:
        return "the tokenizer has extra special tokens"
    return None


def _trimmable(model) -> bool:
    """open_clip's CLIP text tower: causal attention, pooled at the end token (argmax)."""
    mask = getattr(model, "attn_mask", None)
    if mask is None or mask.dim() != 2:
        return False
    above = torch.ones(mask.shape, dtype=torch.bool).triu(1)
    causal = bool((mask[above] < -1e3).all()) and bool((mask[~above] == 0).all())
    blocks = getattr(getattr(model, "transformer", None), "resblocks", [])
    plain = all(
        type(b).__name__ == "ResidualAttentionBlock"
        and isinstance(b.attn, torch.nn.MultiheadAttention)
        and b.attn.batch_first
        and b.attn.in_proj_weight is not None
        and not hasattr(b, "ln_1_kv")
        for b in blocks
    )
    return (
        causal
        and plain
        and len(blocks) > 0
        and all(hasattr(model, a) for a in ("token_embedding", "positional_embedding", "ln_final"))
        and getattr(model, "text_pool_type", None) == "argmax"
    )


class _FullText(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return F.normalize(self.model.encode_text(tokens), dim=-1)


class _TrimmedText(torch.nn.Module):
    """CLIP.encode_text for tokens cut after the last end token: the positional
    embedding and the causal mask are cut to the same length. Attention is written out
    (the blocks' own weights, open_clip's ResidualAttentionBlock order): traced, the
    fused nn.MultiheadAttention keeps the sample's sequence length as a constant."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens):
        m = self.model
        n = tokens.shape[1]
        x = m.token_embedding(tokens) + m.positional_embedding[:n]
        mask = m.attn_mask[:n, :n]
        for block in m.transformer.resblocks:
            x = x + block.ls_1(_attention(block.attn, block.ln_1(x), mask))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)


def _attention(mha: torch.nn.MultiheadAttention, x, mask):
    """nn.MultiheadAttention(x, x, x, attn_mask=mask) for batch-first x (B, N, D)."""
    heads = mha.num_heads
    width = x.shape[-1] // heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)

    def split(t):  # (B, N, D) → (B, heads, N, width); -1 keeps N free in the graph
        return t.reshape(t.shape[0], -1, heads, width).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    weights = (q @ k.transpose(-2, -1)) * (width**-0.5) + mask
    out = (weights.softmax(dim=-1) @ v).transpose(1, 2)
    return mha.out_proj(out.reshape(out.shape[0], -1, heads * width))


class _Image(torch.nn.Module):
    """uint8 (B, H, W, 3) in, as the indexer's decoders make them; normalised in-graph."""

    def __init__(self, model, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().float().cpu().clone())
        self.register_buffer("std", std.detach().float().cpu().clone())

    def forward(self, pixels):
        x = pixels.permute(0, 3, 1, 2).float().div(255.0).sub(self.mean).div(self.std)
        return F.normalize(self.model.encode_image(x), dim=-1)


def _to_onnx(module, sample, path: Path, input_name: str, axes: dict) -> None:
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's fused fast path has no ONNX translation; the plain path
    # computes the same thing.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                (sample,),
                str(path),
                input_names=[input_name],
                output_names=["vectors"],
                dynamic_axes={input_name: axes, "vectors": {0: "batch"}},
                opset_version=OPSET,
                # ONNX Runtime folds constants when it optimises the graph (_optimise);
                # folding here too cost ~1 s per tower.
                do_constant_folding=False,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _optimise(raw: Path, out: Path) -> None:
    """Let ONNX Runtime fuse the graph once (portable fusions only: no hardware-specific
    layouts) and save it with its weights in a file beside it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", out.name + ".data"
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    raw.unlink()
