import numpy as np
import pytest

from langprune.cuts.select import (
    budget_heads,
    candidate_budgets,
    largest_passing,
    layer_options,
    random_selection,
    search,
    select_heads,
)
from langprune.errors import UserError
from langprune.model.parts import kv_heads_kept


def costs(seed=0, shape=(6, 4)):
    return np.random.default_rng(seed).normal(size=shape)


def brute_force_free(c, n_kv, n_drop):
    """Lowest-cost valid selection by enumerating every layer's options jointly."""
    import itertools

    opts = [layer_options(c[layer], n_kv) for layer in range(len(c))]
    best = None
    for combo in itertools.product(*[list(o.items()) for o in opts]):
        if sum(r for r, _ in combo) == n_drop:
            cost = sum(v[0] for _, v in combo)
            best = cost if best is None or cost < best else best
    return best


@pytest.mark.parametrize("n_kv", [1, 2, 4])
def test_free_selection_is_optimal_and_valid(n_kv):
    c = costs(shape=(4, 4))
    for n_drop in candidate_budgets(c, n_kv, "free"):
        sel = select_heads(c, n_kv, n_drop, "free")
        assert len(sel.drop) == n_drop
        assert sel.cost == pytest.approx(brute_force_free(c, n_kv, n_drop))
        for layer, kept in enumerate(sel.keep):
            assert kept and kv_heads_kept(kept, 4, n_kv, layer)  # raises if groups are uneven


def test_unreachable_budgets_name_the_nearest():
    c = costs(shape=(2, 4))
    assert candidate_budgets(c, 2, "free") == [0, 2, 3, 4, 5, 6]
    with pytest.raises(UserError, match=r"exactly 1 heads; nearest: \[0, 2\]"):
        select_heads(c, 2, 1, "free")


def test_uniform_selection_drops_the_cheapest_per_layer():
    c = costs()
    sel = select_heads(c, 1, 12, "uniform")
    assert sel.per_layer == [2] * 6
    for layer in range(6):
        assert sorted(h for at, h in sel.drop if at == layer) == sorted(np.argsort(c[layer])[:2].tolist())


def test_budget_errors():
    c = costs()
    with pytest.raises(UserError, match="remove every head"):
        select_heads(c, 1, 24, "free")
    with pytest.raises(UserError, match="at most 18 of 24"):
        select_heads(c, 1, 20, "free")
    with pytest.raises(UserError, match="multiple of 6"):
        select_heads(c, 1, 7, "uniform")
    assert budget_heads(0.25, 18, 4, "uniform") == 18
    assert budget_heads(0.25, 30, 9, "free") == 68


def test_tolerance_search_finds_the_largest_passing_budget_with_few_probes():
    probed = []

    def passes(n_drop):  # perplexity grows 1% per dropped head, tolerance +5%
        probed.append(n_drop)
        return 10.0 * (1 + 0.01 * n_drop) <= 10.0 * 1.05

    budgets = candidate_budgets(costs(), 1, "free")
    assert budgets[largest_passing(budgets, passes)] == 5
    assert len(probed) <= 6 and 5 in probed and probed[0] == budgets[0]  # the smallest first; the answer was measured
    probed.clear()
    assert largest_passing([6, 12, 18], passes) is None and probed == [6]  # the smallest fails: one probe
    assert largest_passing([1, 2], lambda n: True) == 1


def test_one_search_serves_a_fixed_budget_and_a_tolerance():
    c = costs()
    select = lambda n_drop: select_heads(c, 1, n_drop, "free")  # noqa: E731
    assert search(select, fixed=3).drop == select_heads(c, 1, 3, "free").drop  # a budget: no probe
    seen = []

    def passes(n_drop, sel):  # the probe gets the candidate and its selection
        seen.append((n_drop, len(sel.drop)))
        return n_drop <= 4

    found = search(select, candidates=candidate_budgets(c, 1, "free")[1:], passes=passes)
    assert len(found.drop) == 4 and all(n == d for n, d in seen)
    assert search(select, candidates=[5, 6], passes=passes) is None


def test_random_selection_respects_the_layout():
    sel = random_selection(6, 4, 2, 8, "free", seed=1)
    assert len(sel.drop) == 8
    for layer, kept in enumerate(sel.keep):
        kv_heads_kept(kept, 4, 2, layer)


def test_tolerance_holds_calibration_to_tol_and_text_beyond_the_corpus_to_its_bits_per_byte_limit():
    """A probe passes when each kept language's calibration perplexity is within TOL and its text beyond the corpus
    ("<lang> <source>") rises at most the bits-per-byte limit: the same tokens, so log-perplexity rises as bpb."""
    from langprune.cuts.tolerance import within_tolerance

    search = {"tol": 0.05, "baseline": {"ru": 10.0, "ru manpages": 20.0}, "outside": ["ru manpages"],
              "outside_bpb_rise": 0.01}
    assert within_tolerance(search, {"ru": 10.4, "ru manpages": 20.5})  # +0.82% bits per byte
    assert not within_tolerance(search, {"ru": 10.4, "ru manpages": 21.0})  # +1.63%, though +5% perplexity
    assert not within_tolerance(search, {"ru": 10.6, "ru manpages": 20.0})
    assert within_tolerance({**search, "outside": []}, {"ru": 10.4, "ru manpages": 21.0})  # a plain key: TOL
