"""The weights a runtime reads to generate one token, by part of the model, from a GGUF file's header;
and so the decode speed-up a memory-bound runtime could reach."""

from pathlib import Path

from ..model.gguf_file import read_header

PARTS = {"attn_": "attention projections", "ffn_": "FFN"}


def _part(name: str) -> str:
    if name in ("output.weight", "token_embd.weight"):
        return "output layer (vocabulary)"
    kind = name.split(".")[2] if name.startswith("blk.") else ""
    return next((part for prefix, part in PARTS.items() if kind.startswith(prefix) and "norm" not in kind), "norms")


def weights_read_per_token(gguf_path: Path) -> dict[str, dict]:
    """{part: {"bytes", "types"}}: the weights read to generate one token, by part of the model.

    Every tensor counts, except the input embedding table when a separate output matrix exists
    (a lookup reads one row of it); a tied table is read whole, as the output layer."""
    tensors = read_header(gguf_path).tensors
    if any(t.name == "output.weight" for t in tensors):
        tensors = [t for t in tensors if t.name != "token_embd.weight"]
    parts: dict[str, dict] = {}
    for t in tensors:
        part = parts.setdefault(_part(t.name), {"bytes": 0, "types": set()})
        part["bytes"] += t.n_bytes
        part["types"].add(t.type.name)
    return {name: {"bytes": p["bytes"], "types": sorted(p["types"])} for name, p in parts.items()}


def ceiling(before: Path, after: Path) -> dict:
    """The decode speed-up a memory-bound runtime could reach: weight bytes read per token, before / after."""
    parts = {"before": weights_read_per_token(before), "after": weights_read_per_token(after)}
    b, a = (sum(p["bytes"] for p in parts[side].values()) for side in ("before", "after"))
    return {"bytes_before": b, "bytes_after": a, "fraction_removed": 1 - a / b, "speedup_ceiling": b / a,
            "parts": parts}
