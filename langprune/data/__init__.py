"""Text: the languages (`languages`), the UDHR corpus or the user's own, split into calibration and
evaluation (`corpus`, with the token ids every stage reads), text beyond the corpus that only the
export's checks read (`outside_text`), and the one way text is scored per language in every runtime
(`evaluate`: perplexity and bits per byte from any `score(ids)`)."""
