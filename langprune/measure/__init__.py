"""Measurements: ONNX Runtime (`onnxrt`) and llama.cpp (`llamacpp`) behind one scorer and one greedy
decoding (`decode`), quality, fidelity and speed in them (`verify`), the export's checks original against
pruned (`checks`), the weights read per token (`weights`), the on-device checks (`mobile`, `arm64`; what
they run on, `arm64_setup`), and the benchmarks of the analysis and the selection (`masking_check`:
candidate against exact masking; `selectivity`: selected against random heads). Results are plain values;
`report` renders them."""
