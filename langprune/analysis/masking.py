"""Head masking: the change in each language's mean loss when one head's output is zeroed (`masking_deltas`),
the layers before the masked one computed once; and the loss with a set of heads masked (`language_losses`)."""

from contextlib import contextmanager

import numpy as np
import torch

from ..model.parts import HEADS, mask_from_drop
from .losses import CandidateLosses, token_losses


@contextmanager
def layers_from(model, start: int):
    """Run only layers[start:] (the caller passes the hidden state entering layer `start`)."""
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList(list(layers)[start:])
    try:
        yield
    finally:
        model.model.layers = layers


def _batch(chunks: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(c) for c in chunks)
    ids = torch.full((len(chunks), width), pad, dtype=torch.long)
    attention = torch.zeros((len(chunks), width), dtype=torch.long)
    for i, c in enumerate(chunks):
        ids[i, : len(c)] = torch.tensor(c)
        attention[i, : len(c)] = 1
    return ids, attention


def masking_deltas(model, chunks: dict[str, list[int]], progress=None, output: str = "candidates", top: int = 64,
                   dtype: torch.dtype = torch.float32, layers=None) -> tuple[np.ndarray, dict[str, float]]:
    """Δ mean loss [language, layer, head] when each head alone is masked, and base losses.

    One right-padded batch holds every language's chunk; padding never affects real tokens
    (causal attention) and is left out of the loss. `output` is "candidates" (see
    CandidateLosses) or "exact"; `dtype` is the output layer's matmul precision. `layers` limits
    which layers' heads are masked (the others' deltas stay 0).
    """
    langs = list(chunks)
    ids, attention = _batch([chunks[lang] for lang in langs], pad=0)
    targets, valid = ids[:, 1:], attention[:, 1:].bool()
    weight = model.get_output_embeddings().weight.detach()
    if getattr(model.config, "final_logit_softcapping", None):
        output = "exact"  # the tail's first-order term assumes plain logits

    def per_language(losses):
        return (losses * valid).sum(1) / valid.sum(1)

    counts = HEADS.sizes(model)
    deltas = np.zeros((len(langs), len(counts), max(counts)))
    with torch.inference_mode():
        out = model.model(input_ids=ids, attention_mask=attention, output_hidden_states=True, use_cache=False)
        final = out.last_hidden_state[:, :-1]
        if output == "candidates":
            losses = CandidateLosses(weight, final, targets, top, dtype)
            base_losses = losses.base
        else:
            fast_weight = weight.to(dtype)

            def losses(hidden):
                return token_losses(model, hidden, targets, weight=fast_weight)

            base_losses = losses(final)
        base = per_language(base_losses)
        entering = out.hidden_states  # entering[l] is the input of layer l
        for layer, n in enumerate(counts):
            if layers is not None and layer not in layers:
                continue
            for head in range(n):
                mask = [None] * len(counts)
                mask[layer] = torch.ones(n)
                mask[layer][head] = 0
                with HEADS.masked(model, mask), layers_from(model, layer):  # hooks first, on every layer
                    hidden = model.model(inputs_embeds=entering[layer], attention_mask=attention, use_cache=False)
                deltas[:, layer, head] = (per_language(losses(hidden.last_hidden_state[:, :-1])) - base).numpy()
                if progress:
                    progress.update(1)
    return deltas, dict(zip(langs, base.tolist()))


def language_losses(model, chunks: dict[str, list[int]], drop=()) -> dict[str, float]:
    """Mean loss per language of one chunk each, in one padded batch, with `drop` heads masked."""

    langs = list(chunks)
    ids, attention = _batch([chunks[lang] for lang in langs], pad=0)
    valid = attention[:, 1:].bool()
    with torch.inference_mode(), HEADS.masked(model, mask_from_drop(HEADS.sizes(model), drop)):
        hidden = model.model(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
        losses = token_losses(model, hidden[:, :-1], ids[:, 1:]) * valid
    return dict(zip(langs, (losses.sum(1) / valid.sum(1)).tolist()))
