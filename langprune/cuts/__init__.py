"""What goes and how: choosing heads and FFN neurons under a layout or a tolerance (`select`, `plan`),
the vocabulary (`vocab`), the o_proj refit (`refit`), and a pruned model as files (`rewrite`)."""
