"""Stage ``evaluate``: 3D and 2D measures of the reconstructions, tables and reports."""
