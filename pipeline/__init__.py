"""densepose3d: from DensePose output to 3D reconstructions of articulated bodies (DP3D)."""
