"""Speculative decoding without an engine: real trace sets, n-gram replay, step costs."""
