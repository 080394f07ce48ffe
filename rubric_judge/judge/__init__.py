"""Judging: the async executor (concurrency, the verdict cache) with its pacing, retry
classification and message building, the transports that reach the judge (litellm for any
provider, a direct client for OpenAI-compatible servers) and the built-in offline judge for
demos and tests."""
