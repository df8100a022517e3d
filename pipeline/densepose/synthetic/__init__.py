"""The synthetic source: posed Anny bodies rendered with exact ground truth, and DensePose-like errors."""
