"""Shrink a multilingual LLM to the languages a deployment needs.

One subpackage a pipeline stage: load -> analyze -> select -> rewrite -> export -> verify -> report.
From Python: `export`, `analyze`, `load_pruned` (api.py); importing it changes nothing and prints nothing.
"""

from .api import ExportResult, analyze, export, load_pruned
from .errors import UserError
from .log import show_progress

__version__ = "0.1.0"
__all__ = ["ExportResult", "UserError", "analyze", "export", "load_pruned", "show_progress", "__version__"]
