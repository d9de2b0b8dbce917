"""A language's loss on its text, as the analysis computes it: per token through the output layer in row blocks
(`token_losses`), the mean over a chunk (`mean_loss`), and the masking runs' cheap form, exact for the plausible
tokens and first order for the rest of the vocabulary (`CandidateLosses`)."""

from contextlib import contextmanager

import torch

EXACT_TOP = 16  # logits recomputed in float32 after a bfloat16 output layer


def token_losses(model, hidden: torch.Tensor, targets: torch.Tensor, rows: int = 256, weight=None) -> torch.Tensor:
    """Per-token NLL from final hidden states, through the output layer in slices (262k logits).

    `weight` may be a float32 or a bfloat16 copy of the output layer (default: a float32 one, made here): with
    bfloat16 the logits come from a fast bf16 matmul, and the ones the loss depends on most (the target's and the top
    EXACT_TOP) are recomputed in float32 before the log-sum-exp.
    """
    stored = model.get_output_embeddings().weight.detach()  # 16 bits at rest (`model.rest`): rows upcast where used
    weight = stored.float() if weight is None else weight
    cap = getattr(model.config, "final_logit_softcapping", None)
    flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    out = []
    for i in range(0, len(flat_h), rows):
        h, t = flat_h[i : i + rows], flat_t[i : i + rows]
        logits = (h.to(weight.dtype) @ weight.T).float()
        if weight.dtype != torch.float32:
            index = torch.cat([logits.topk(EXACT_TOP, dim=-1).indices, t[:, None]], dim=1)
            logits.scatter_(1, index, torch.einsum("rd,rkd->rk", h, stored[index].float()))
        if cap:
            logits = torch.tanh(logits / cap) * cap
        out.append(torch.logsumexp(logits, -1) - logits.gather(1, t[:, None])[:, 0])
    return torch.cat(out).view(targets.shape)


def mean_loss(model, ids: list[int]) -> torch.Tensor:
    x = torch.tensor([ids])
    hidden = model.model(input_ids=x, use_cache=False).last_hidden_state
    return token_losses(model, hidden[:, :-1], x[:, 1:]).mean()


class CandidateLosses:
    """Per-token losses of final hidden states near a base, without the full output layer per call.

    Masking one head moves the final hidden states h a little from the base h0. The loss's
    log-normaliser is dominated by the tokens the model finds plausible, the candidates U: the
    union over positions of each position's top `top` tokens, and the targets. Their logits are
    computed exactly (a |U|-row matmul: 22,205 rows instead of 262,144 for Gemma 3 270M's default
    analysis, 12 languages x 128 tokens at top=64); the rest of the
    vocabulary, the tail, enters to first order around h0:

        sum_{j not in U} exp(w_j . h)  ~  T exp((h - h0) . m),
        T = sum_{j not in U} exp(w_j . h0),   m = sum_{j not in U} exp(w_j . h0) w_j / T.

    The tail statistics come from two passes over the full output layer at h0 in `dtype` (the
    analysis's measured precision): one for the candidates, one for the tail.
    """

    def __init__(self, weight: torch.Tensor, hidden0: torch.Tensor, targets: torch.Tensor, top: int,
                 dtype: torch.dtype = torch.float32, rows: int = 256):
        self.shape = targets.shape
        self.h0 = hidden0.reshape(-1, hidden0.shape[-1])
        targets = targets.reshape(-1)
        w = weight.to(dtype)
        slices = range(0, len(self.h0), rows)

        def logits(i):
            return (self.h0[i : i + rows].to(dtype) @ w.T).float()

        shift, tops = [], []
        for i in slices:
            z = logits(i)
            shift.append(z.max(1).values)
            tops.append(z.topk(top, dim=1).indices.ravel())
        self.shift = torch.cat(shift)
        self.union = torch.unique(torch.cat([*tops, targets]))
        self.target_column = torch.searchsorted(self.union, targets)
        self.union_weight = weight[self.union].float().contiguous()
        tail, moment = [], []
        for i in slices:
            p = torch.exp(logits(i) - self.shift[i : i + rows, None])
            p[:, self.union] = 0
            tail.append(p.sum(1))
            moment.append((p.to(dtype) @ w).float())
        tail = torch.cat(tail).clamp_min(1e-30)
        self.log_tail = self.shift + torch.log(tail)  # in log space: a masked run may move logits far
        self.tail_mean = torch.cat(moment) / tail[:, None]
        self.base = self(hidden0)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        h = hidden.reshape(-1, hidden.shape[-1])
        z = h @ self.union_weight.T
        log_tail = self.log_tail + ((h - self.h0) * self.tail_mean).sum(1)
        log_norm = torch.logsumexp(torch.cat([z, log_tail[:, None]], dim=1), dim=1)
        return (log_norm - z.gather(1, self.target_column[:, None])[:, 0]).view(self.shape)


@contextmanager
def frozen(model):
    """No parameter requires grad inside (a head-mask gradient needs no weight gradients)."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
