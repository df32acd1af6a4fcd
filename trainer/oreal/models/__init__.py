"""Model helpers: the SmolLM2 GGUF conversion of the quickstart (`python -m oreal.models.smollm2`)."""
