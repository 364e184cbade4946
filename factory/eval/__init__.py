"""Eval stage: real data, evaluators and the scores on the user's real validation rows."""
