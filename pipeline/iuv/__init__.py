"""Stage ``iuv``: repaired IUV (or CSE) crops; ``store`` is its read side."""
