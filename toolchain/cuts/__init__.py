"""What goes and how: heads and FFN neurons behind one interface (`parts`, on `hooks`; `heads` for
what only heads have), choosing under a layout or a tolerance (`select`, `plan`), the vocabulary
(`vocab`), the o_proj refit (`refit`), and a pruned model as files (`rewrite`)."""
