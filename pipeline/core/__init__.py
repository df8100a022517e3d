"""The pipeline's foundations, no science: errors, params, atomic I/O, Zarr stores, the stage runner, safe unpicklers."""
