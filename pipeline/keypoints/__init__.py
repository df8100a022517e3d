"""Stage ``keypoints``: template-vertex keypoints per instance; ``store`` is its read side."""
