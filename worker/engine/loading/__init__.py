"""Getting a model resident: the registry (the one spec parser), the GGUF cache, tiny test
models, bf16 copies."""
