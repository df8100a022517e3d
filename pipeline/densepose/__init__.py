"""Stage ``densepose``: DensePose output per instance from one of four sources; ``store`` is its read side."""
