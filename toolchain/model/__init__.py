"""The model: loading it offline from a recipe, a GGUF or a Hugging Face directory (`load`, `recipes`),
the record of each supported family (`families`), and a tokenizer that gives llama.cpp's ids (`tokenizer`)."""
