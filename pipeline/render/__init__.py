"""Rendering of the synthetic bodies, below the stages that render (densepose's synthetic and network sources, stage
images): poses (``poses``), ray casting (``rays``), photo-like shading, outfits, occluders and neighbours (``scene``),
DensePose-like corruption (``corruption``) and the array-level rendering of posed bodies (``bodies``). It writes no
store."""
