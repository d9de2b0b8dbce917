"""Text: the languages (`languages`), the UDHR corpus or the user's own, split into calibration and
evaluation (`corpus`, with the token ids every stage reads), and text beyond the corpus that only the
export's checks read (`outside_text`)."""
