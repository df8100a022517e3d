"""Geometry of triangle meshes: mesh topology and measures, the Laplace-Beltrami basis (``lbo`` stage), UV charts, cameras, mesh drawing."""
