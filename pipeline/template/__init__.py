"""Stage ``template``: the body template (mesh, DensePose parts and charts, joints, CSE embeddings); ``file`` is its read side."""
