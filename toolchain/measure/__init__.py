"""Measurements in the real runtimes: perplexity the same way everywhere (`evaluate`), ONNX Runtime
(`onnxrt`) and llama.cpp (`llamacpp`) behind one scorer, quality, fidelity and speed (`verify`), the
export's checks original against pruned (`checks`), and re-measuring an export (`bench`)."""
