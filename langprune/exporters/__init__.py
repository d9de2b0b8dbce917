"""The runtimes' files: ONNX with a KV cache for ONNX Runtime (`export_onnx`), GGUF for llama.cpp (`export_gguf`,
under the architecture `gguf_arch` chooses) quantized by llama.cpp's own quantizer (`quantize`), and every
file of one model, the original's cached (`files`)."""
