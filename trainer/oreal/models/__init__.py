"""Model helpers: SmolLM2 GGUF conversion (quickstart) and tiny random models (tests)."""
