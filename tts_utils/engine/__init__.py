"""The engine layer: starting vLLM, talking to it, what it loads, what it may reach into."""
