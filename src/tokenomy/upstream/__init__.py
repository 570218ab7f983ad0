"""Provider adapters: OpenAI-compatible HTTP and Anthropic's Messages API."""
