"""densepose3d: from DensePose output to 3D reconstructions of articulated bodies (DP3D).

Packages, in the order of their imports (docs/DESIGN.md §1); a stage package is imported by later
stages only through its read side:

==================  ===========================================================  ==================
package             what it holds                                                read side
==================  ===========================================================  ==================
core                errors, params, atomic I/O, Zarr stores, the stage runner,   (everything)
                    safe unpicklers, the image-file reader
geometry            meshes, the Laplace-Beltrami basis (stage lbo), charts,      (everything);
                    cameras, mesh drawing                                        ``lbo`` for lbo.npz
template            stage template: the body template                            ``file``
render              the synthetic bodies rendered: poses, rays, scenes,          (everything, for
                    corruption (for the stages that render)                      densepose, images)
densepose           stage densepose: DensePose output from one of four sources   ``store``
images              stage images: the photos the network learns from             ``store``
network             stage network: the correspondence network                    ``checkpoint``
iuv                 stage iuv: repaired IUV (or CSE) crops                       ``store``
keypoints           stage keypoints: template-vertex keypoints                   ``store``
train               stage train: the lifting model, losses, training             ``checkpoint``
evaluate            stage evaluate: measures, tables, reports                    (last stage)
==================  ===========================================================  ==================

Size letters, one meaning each in the whole package (a docstring writes an array as
``(n, S, S, 3) uint8``; a number is a fixed size):

=====  =================================================================================
n      instances of a store, or of any list of instances (crops, cameras)
k      instances of one image
B      instances of a batch (one forward pass, one evaluation batch)
N      vertices of a mesh: the template's, or a mesh being made into it (Anny, SMPL, CSE)
F      faces of that mesh
E      edges of that mesh
C      chart points (DensePose's UV charts: a vertex on a chart seam is several points)
J      joints (14, LSP order)
S      crop side, pixels (``densepose.crop``)
H, W   image height and width, pixels; h, w the same of a box or of a heatmap
P      pixels or points of a flat list (e.g. the foreground pixels of a crop)
D      CSE embedding dimensions
K      Laplace-Beltrami eigenvectors (the model: the ``model.lbo_basis`` it uses)
M      latent parts (``model.parts``)
L      latent code size of the model
Q      shape-basis size of the baselines (``model.basis_size``)
U      hidden width of the model's trunk (``model.hidden``)
T      rotation samples of the canonicalisation loss
G      bodies (synthetic: posed and rendered together)
O      bones of a rigged body (Anny's skeleton)
Z      skinning influences per vertex
R      texels per chart side of a UV map
=====  =================================================================================

Letters in equations name quantities, not sizes (docs/METHOD.md): X the template, Y a posed shape,
A the part logits (K, M), L and M the Laplace-Beltrami stiffness and mass matrices.
"""
