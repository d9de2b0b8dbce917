"""What goes and how: choosing heads and FFN neurons under a layout or a tolerance (`select`, `plan`; a candidate
measured masked against the tolerance, `tolerance`; a step at a time, `iterative`),
the vocabulary (`vocab`: which tokens; `vocab_size`: how many; `merges`: the tokens tokenizing forms on the
way; `trim`: the cut applied), the o_proj refit (`refit`), and a pruned model as files (`rewrite`)."""
