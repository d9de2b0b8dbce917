"""Choose the heads to drop: those other languages need and the kept languages don't.

Each head gets a drop cost from the analysis:
    cost = max importance to a kept language - weight * mean importance to the other languages
(importances are per-language normalized; lower cost = drop sooner). A budget is met at the
lowest total cost under the layout's constraints, by dynamic programming over layers:
- every layer keeps at least one head;
- with grouped-query attention, every kept KV group of a layer keeps the same number of query
  heads (a group may go whole);
- `uniform`: the same head count in every layer (llama.cpp's gemma3 graph needs it), `free`: any.
A tolerance instead of a budget searches (`search`, the one routine for heads and FFN neurons) the
largest drop whose measured calibration perplexity stays within +tol for every kept language.
"""

import itertools
from collections.abc import Callable

import numpy as np

from ..analysis.analyze import Analysis
from ..errors import UserError
from ..model.parts import Selection

SPECIFICITY_WEIGHT = 0.25


def drop_costs(analysis: Analysis, keep_langs: list[str], weight: float = SPECIFICITY_WEIGHT) -> np.ndarray:
    """[layer, head] cost of dropping each head (lower: drop sooner)."""
    missing = [lang for lang in keep_langs if lang not in analysis.languages]
    if missing:
        raise UserError(f"languages {missing} are not in the analysis ({', '.join(analysis.languages)})")
    imp = analysis.importance()
    kept = imp[[analysis.index(lang) for lang in keep_langs]].max(axis=0)
    others = [i for i, lang in enumerate(analysis.languages) if lang not in keep_langs]
    other = imp[others].mean(axis=0) if others else np.zeros_like(kept)
    return kept - weight * other


def layer_options(costs: np.ndarray, n_kv: int) -> dict[int, tuple[float, list[int]]]:
    """For one layer: heads dropped -> (lowest cost, kept heads) over the valid GQA configurations."""
    n_heads = len(costs)
    group = n_heads // n_kv
    best: dict[int, tuple[float, list[int]]] = {0: (0.0, list(range(n_heads)))}
    for n_groups in range(1, n_kv + 1):
        for groups in itertools.combinations(range(n_kv), n_groups):
            for per_group in range(1, group + 1):
                # in each kept group keep its `per_group` most costly heads (cheapest ones go)
                kept = sorted(h for g in groups
                              for h in sorted(range(g * group, (g + 1) * group), key=lambda h: -costs[h])[:per_group])
                dropped = [h for h in range(n_heads) if h not in kept]
                cost = float(costs[dropped].sum())
                if len(dropped) not in best or cost < best[len(dropped)][0]:
                    best[len(dropped)] = (cost, kept)
    return best


def select_heads(costs: np.ndarray, n_kv: int, n_drop: int, layout: str) -> Selection:
    """Drop exactly n_drop heads at the lowest total cost under the layout's constraints."""
    n_layers, n_heads = costs.shape
    options = [layer_options(costs[layer], n_kv) for layer in range(n_layers)]
    total = n_layers * n_heads
    most = min(max(o) for o in options) * n_layers if layout == "uniform" else sum(max(o) for o in options)
    if n_drop >= total:
        raise UserError(f"a budget of {n_drop} heads would remove every head of the model ({total})")
    if n_drop > most:
        raise UserError(f"at most {most} of {total} heads can go with the {layout} layout (each layer keeps one)")
    if layout == "uniform":
        if n_drop % n_layers:
            raise UserError(f"the uniform layout drops a multiple of {n_layers} heads (one count for all layers); "
                            f"got {n_drop}")
        per_layer = [n_drop // n_layers] * n_layers
        if any(p not in o for p, o in zip(per_layer, options)):
            raise UserError(f"no valid grouped-query layout drops {per_layer[0]} heads per layer")
    elif layout == "free":
        reachable = _allocations(options)
        if n_drop not in reachable:
            near = sorted(reachable, key=lambda n: abs(n - n_drop))[:2]
            raise UserError(f"no valid grouped-query layout drops exactly {n_drop} heads; nearest: {sorted(near)}")
        per_layer = reachable[n_drop][1]
    else:
        raise UserError(f"unknown layout {layout!r} (free, uniform)")
    keep = [options[layer][p][1] for layer, p in enumerate(per_layer)]
    return Selection(keep, [n_heads] * n_layers, layout,
                     float(sum(options[layer][p][0] for layer, p in enumerate(per_layer))))


def _allocations(options: list[dict[int, tuple[float, list[int]]]]) -> dict[int, tuple[float, list[int]]]:
    """Every reachable total drop -> (lowest cost, heads dropped per layer), by DP over layers."""
    best = {0: (0.0, [])}
    for opts in options:
        nxt = {}
        for done, (cost, counts) in best.items():
            for r, (c, _) in opts.items():
                if done + r not in nxt or cost + c < nxt[done + r][0]:
                    nxt[done + r] = (cost + c, counts + [r])
        best = nxt
    return best


def budget_heads(fraction: float, n_layers: int, n_heads: int, layout: str) -> int:
    """HEADS=0.25 -> the number of heads to drop (a multiple of the layer count when uniform); `fraction` in [0, 1),
    as `preflight.check_fraction` holds every caller's."""
    total = n_layers * n_heads
    if layout == "uniform":
        return round(fraction * n_heads) * n_layers
    return round(fraction * total)


def candidate_budgets(costs: np.ndarray, n_kv: int, layout: str) -> list[int]:
    """Every number of heads the layout can drop, ascending."""
    options = [layer_options(c, n_kv) for c in costs]
    if layout == "uniform":
        common = set.intersection(*(set(o) for o in options))
        return sorted(r * len(costs) for r in common)
    return sorted(_allocations(options))


def search(select: Callable[[object], Selection], fixed=None, candidates: list = (),
           passes: Callable[[object, Selection], bool] | None = None) -> Selection | None:
    """One part's cut, heads or FFN neurons: `select(fixed)` for a fixed budget; else, within a
    tolerance, the selection of the largest candidate whose measurement passes
    (`passes(candidate, selection)`), or None when none does."""
    if fixed is not None:
        return select(fixed)
    best = largest_passing(candidates, lambda candidate: passes(candidate, select(candidate)))
    return None if best is None else select(candidates[best])


def largest_passing(candidates: list, passes: Callable[[object], bool]) -> int | None:
    """Index of the largest candidate that passes (a real measurement each), or None.

    Quality falls as the cut grows (nearly always), so: the smallest first (if even it fails,
    nothing larger passes: one probe, the usual outcome for a small model at a tight TOL), then a
    binary search over the rest, about log2(n) probes; the answer is always a candidate that was
    measured passing."""
    if not candidates or not passes(candidates[0]):
        return None
    lo, hi, best = 1, len(candidates) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if passes(candidates[mid]):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def random_selection(n_layers: int, n_heads: int, n_kv: int, n_drop: int, layout: str, seed: int) -> Selection:
    """The same budget and layout, heads chosen at random (the baseline a selection must beat)."""
    rng = np.random.default_rng(seed)
    return select_heads(rng.random((n_layers, n_heads)), n_kv, n_drop, layout)
