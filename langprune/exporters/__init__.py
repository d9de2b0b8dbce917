"""The runtimes' files: ONNX with a KV cache for ONNX Runtime (`export_onnx`), GGUF through
llama.cpp's quantizer (`export_gguf`), and every file of one model, the original's cached (`files`)."""
