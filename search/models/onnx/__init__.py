"""A model's towers exported to ONNX, so queries and small index runs need no torch.

Importing torch and open_clip costs seconds on a small machine; a query costs
milliseconds. So once per model (at the end of an `index` run that loaded it with torch)
the text and image towers are exported to ONNX, checked against torch (cosine ≥ 0.999 on
a set of texts and images, else refused), and kept under ``cache/onnx/`` in the library,
keyed by model id (architecture + weights fingerprint). Later commands run them with
ONNX Runtime and tokenize with search.models.tokenizer.

- ``store``: where exports live, their manifest, and whether one still belongs to a model.
- ``export``: torch → ONNX, verification (imports torch; runs once per model).
- ``encoder``: the Encoder over ONNX Runtime sessions (no torch).
"""
