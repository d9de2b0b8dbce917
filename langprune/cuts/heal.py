"""Recover after the cut by distillation on the CPU (`HEAL=<minutes>`): the pruned model learns to
give the original's next-token distribution on kept-language text.

    loss = KL(original || pruned) per position, over the kept vocabulary, coarsened to the
           original's 128 most likely tokens and one bucket for the rest (`coarse_kl`)

What trains (TRAINED): every projection of the layers and the norms; the embeddings, the largest matrix, stay.
The original's targets are computed once, before the loop. The text is the kept languages'
calibration split and continuations the original model samples from their openings (the corpus is
one document a language; no data is downloaded). The loop runs for the minutes given, in whole
steps, with a progress bar; the export measures the result like any other cut.

Why these choices (what trains, the learning rate, the minutes): docs/benchmarks.md, "HEAL".
"""

import time

import torch

from ..analysis.losses import frozen
from ..data.corpus import calibration_ids
from ..log import progress
from ..model.rest import as_float32

CHUNK_TOKENS = 256
SAMPLED_TOKENS = 256  # new tokens per sampled continuation
SAMPLES = 8  # continuations per kept language
LEARNING_RATE = 1e-5
TOP = 128  # the original's most likely tokens kept per position; the rest is one bucket
TRAINED = ("_proj.weight", "norm.weight")  # every projection (q, k, v, o, gate, up, down) and norm of the layers


def distillation_text(model, tokenizer, corpus, langs: list[str], seed: int = 0) -> list[list[int]]:
    """Token chunks: each kept language's calibration split, and SAMPLES continuations of SAMPLED_TOKENS
    the model samples (temperature 1) from the openings of its calibration chunks."""
    chunks = [ids for lang in langs for ids in calibration_ids(tokenizer, corpus, lang, 10**9, CHUNK_TOKENS)]
    generator = torch.Generator().manual_seed(seed)
    for lang in langs:
        openings = [ids[:16] for ids in calibration_ids(tokenizer, corpus, lang, 10**9, 64) if len(ids) >= 16][:SAMPLES]
        chunks += _sample(model, openings, SAMPLED_TOKENS, generator)
    return chunks


@torch.no_grad()
def _sample(model, openings: list[list[int]], n_new: int, generator: torch.Generator) -> list[list[int]]:
    """Ancestral sampling of equally long openings side by side, with the KV cache."""
    ids = torch.tensor(openings)
    out = model(ids, use_cache=True)
    for _ in range(n_new):
        new = torch.multinomial(torch.softmax(out.logits[:, -1].float(), -1), 1, generator=generator)
        ids = torch.cat([ids, new], 1)
        out = model(new, past_key_values=out.past_key_values, use_cache=True)
    return ids.tolist()


def heal(student, teacher, chunks: list[list[int]], minutes: float, tokens: list[int] | None = None,
         lr: float = LEARNING_RATE) -> dict:
    """Train the student's TRAINED parameters for `minutes` (at least one step) to match the teacher
    on `chunks` (ids of the original vocabulary; `tokens`: the kept ones the distributions cover,
    None for all). Returns {"steps", "tokens", "seconds", "kl_first", "kl_last"}: the mean KL (nats
    a position) of the first and the last len(chunks) steps."""
    weight = teacher.get_output_embeddings().weight.detach()
    weight = (weight if tokens is None else weight[torch.tensor(tokens)]).float()
    with torch.no_grad():
        targets = [_top(_hidden(teacher, ids) @ weight.T) for ids in chunks]
    trained = [p for name, p in student.named_parameters() if name.endswith(TRAINED)]
    losses, start = [], time.monotonic()
    # trained in float32 (Adam's steps are far below a 16-bit weight's rounding), then rounded back to rest
    with as_float32(trained), frozen(student), \
            progress(total=round(minutes * 60), desc="heal (distillation)", unit="s") as bar:
        for p in trained:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(trained, lr=lr)
        while not losses or time.monotonic() - start < minutes * 60:
            ids, (top, log_q) = chunks[len(losses) % len(chunks)], targets[len(losses) % len(chunks)]
            loss = coarse_kl(torch.log_softmax(_hidden(student, ids) @ weight.T, -1), top, log_q)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.n = min(round(time.monotonic() - start), bar.total)
            bar.set_postfix(kl=f"{losses[-1]:.4f}", steps=len(losses))
    first, last = losses[: len(chunks)], losses[-len(chunks):]
    return {"steps": len(losses), "tokens": sum(len(ids) for ids in chunks), "seconds": time.monotonic() - start,
            "kl_first": sum(first) / len(first), "kl_last": sum(last) / len(last)}


def _top(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's TOP tokens per position and their log-probabilities."""
    log_q = torch.log_softmax(logits, -1)
    values, top = log_q.topk(min(TOP, log_q.shape[-1]), -1)
    return top, values


def coarse_kl(log_p: torch.Tensor, top: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(q || p) over each position's `top` tokens and one bucket for all others, averaged over
    positions: exact for the tokens that carry the teacher's mass, and the tail still counts."""
    log_p_top = log_p.gather(-1, top)
    q_rest = (1 - log_q.exp().sum(-1)).clamp_min(1e-12)
    p_rest = (1 - log_p_top.exp().sum(-1)).clamp_min(1e-12)
    kl = (log_q.exp() * (log_q - log_p_top)).sum(-1) + q_rest * (q_rest.log() - p_rest.log())
    return kl.mean()


def _hidden(model, ids: list[int]) -> torch.Tensor:
    """The last hidden states (after the final norm) of one chunk, [positions, hidden]."""
    return model.get_decoder()(torch.tensor([ids])).last_hidden_state[0]
