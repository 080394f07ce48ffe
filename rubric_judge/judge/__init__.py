"""The judge executor: litellm + instructor calls with retries, rate limits and accounting."""
