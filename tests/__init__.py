"""Tests: tiny random models of every family (`tiny.py`), and the real default model (marked `real`)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # where `make` runs
