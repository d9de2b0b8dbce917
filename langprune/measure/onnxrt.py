"""ONNX Runtime on CPU for a model exported by `export_onnx`: open, run, score text, generate greedily.

The cache stays inside ONNX Runtime between steps: each step's `present.*` outputs are bound as
the next step's `past_key_values.*` inputs (IO binding), so decoding copies nothing but the logits.
The first step passes an empty past (length 0).
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.evaluate import nll_from_logits
from .decode import greedy


def open_session(path: str | Path, threads: int | None = None):
    """An InferenceSession on CPUExecutionProvider; `threads` intra-op threads (None: ONNX Runtime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def cache_names(session) -> list[str]:
    """The past_key_values.* input names, in graph order."""
    return [i.name for i in session.get_inputs() if i.name.startswith("past_key_values.")]


def empty_past(session, batch: int = 1) -> dict[str, np.ndarray]:
    """A zero-length past for every layer, shaped from the graph (KV heads may differ per layer)."""
    past = {}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            _, n_kv, _, dim = i.shape
            past[i.name] = np.zeros((batch, n_kv, 0, dim), dtype=np.float32)
    return past


def run(session, input_ids, attention_mask=None, position_ids=None, past=None):
    """One forward pass with numpy arrays: (logits [batch, new, vocab], the new past).

    The new past maps past_key_values.* names to the present.* outputs, ready for the next call.

    attention_mask covers past + new tokens (default all ones); position_ids default to the
    absolute positions after the past; past defaults to empty.
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    batch, n_new = input_ids.shape
    past = empty_past(session, batch) if past is None else past
    past_len = next(iter(past.values())).shape[2]
    if attention_mask is None:
        attention_mask = np.ones((batch, past_len + n_new), dtype=np.int64)
    if position_ids is None:
        position_ids = np.broadcast_to(np.arange(past_len, past_len + n_new, dtype=np.int64), (batch, n_new))
    feeds = {
        "input_ids": input_ids,
        "attention_mask": np.asarray(attention_mask, dtype=np.int64),
        "position_ids": np.ascontiguousarray(position_ids, dtype=np.int64),
        **past,
    }
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, feeds)
    present = {name.replace("present.", "past_key_values.", 1): out for name, out in zip(names[1:], outputs[1:])}
    return outputs[0], present


def ort_scorer(session) -> Callable[[list[int]], float]:
    """score(ids) -> summed NLL of ids[1:], like evaluate.torch_scorer; one pass, no cache kept."""
    past = empty_past(session)
    positions = np.arange(1 << 16, dtype=np.int64)[None, :]

    def score(ids: list[int]) -> float:
        n = len(ids)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "position_ids": positions[:, :n],
            **past,
        }
        (logits,) = session.run(["logits"], feeds)
        return nll_from_logits(logits[0], ids)

    return score


class Decoder:
    """A `decode` decoder with the cache kept in ONNX Runtime (IO binding), for one sequence."""

    def __init__(self, session, max_len: int = 4096):
        self.session = session
        self.past_names = cache_names(session)
        self.present_names = [n.replace("past_key_values.", "present.", 1) for n in self.past_names]
        self.mask = np.ones((1, max_len), dtype=np.int64)
        self.positions = np.arange(max_len, dtype=np.int64)[None, :]
        self.binding = session.io_binding()

    def run(self, ids: np.ndarray, start: int, past: dict) -> tuple[np.ndarray, dict]:
        """Feed ids [1, n] at positions start.. after `past` (OrtValues or arrays); -> (last logits, new past)."""
        binding, n = self.binding, ids.shape[1]
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", self.mask[:, : start + n])
        binding.bind_cpu_input("position_ids", self.positions[:, start : start + n])
        for name, value in past.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()[0, -1]
        return logits, dict(zip(self.past_names, outputs[1:]))

    def prefill(self, ids: list[int]) -> np.ndarray:
        """A new sequence (a `decode` decoder): its last logits; the cache holds it."""
        logits, self.past = self.run(np.asarray([ids], dtype=np.int64), 0, empty_past(self.session))
        self.position = len(ids)
        return logits

    def step(self, token: int) -> np.ndarray:
        logits, self.past = self.run(np.asarray([[token]], dtype=np.int64), self.position, self.past)
        self.position += 1
        return logits


def generate(session, ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation of ids by n_new tokens: prefill, then one token per step with the cache."""
    return greedy(Decoder(session, max_len=len(ids) + n_new), ids, n_new)
