"""Stage ``densepose``: DensePose output per instance from one of three sources; ``store`` is its read side."""
