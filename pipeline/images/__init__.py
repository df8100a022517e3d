"""Stage ``images``: the rendered photos the correspondence network learns from (``write``); ``store`` is its read
side."""
