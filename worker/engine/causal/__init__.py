"""The decoder-only engine (Llama, Gemma, SmolLM): engine facts, the session, coalition planning."""
