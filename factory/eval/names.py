"""The evaluators' names and the eval's training conditions, spelled here once (no imports: the CLI uses them)."""

LINEAR, SETFIT, ENCODER = "linear", "setfit", "encoder"
REAL, SYNTHETIC, SYNTHETIC_REAL = "real", "synthetic", "synthetic+real"
CONDITIONS = (REAL, SYNTHETIC, SYNTHETIC_REAL)
