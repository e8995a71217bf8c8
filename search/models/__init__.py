"""Models: specs and loading, the encoders, the tokenizer, the ONNX/OpenVINO fast path,
and the models a library knows."""
