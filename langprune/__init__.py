"""Shrink a multilingual LLM to the languages a deployment needs.

One module a pipeline stage: load -> analyze -> select -> rewrite -> export -> verify -> report.
"""

__version__ = "0.1.0"
