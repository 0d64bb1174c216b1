"""The config model: every key of a stack config, its grammar and its checks."""
