"""Stage ``train``: the lifting model, its losses and training loop; ``checkpoint`` is its read side."""
