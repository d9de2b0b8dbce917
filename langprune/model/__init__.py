"""The model: loading it offline from a recipe, a GGUF or a Hugging Face directory (`load`, `recipes`),
the record of each supported family (`families`), a tokenizer that gives llama.cpp's ids (`tokenizer`;
a Hugging Face tokenizer's GGUF vocabulary, `hf_vocab`), and its units that cuts address, heads and FFN
neurons behind one interface (`parts`; `heads` for what only heads have)."""
