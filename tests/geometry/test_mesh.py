import numpy as np
import pytest
import trimesh

from pipeline.geometry.mesh import MeshError, boundary_loops, check_mesh, clean_mesh, edges, face_adjacency


def _two_boxes():
    a = trimesh.creation.box()
    b = trimesh.creation.icosphere(subdivisions=1)
    b.vertices += [5, 0, 0]
    v = np.vstack([a.vertices, b.vertices])
    f = np.vstack([a.faces, b.faces + len(a.vertices)])
    return v, f, len(a.vertices), len(a.faces), len(b.vertices), len(b.faces)


def test_keep_largest_component_remaps_indices():
    v, f, na, fa, nb, fb = _two_boxes()
    cm = clean_mesh(v, f, components="keep_largest")
    assert len(cm.vertices) == nb and len(cm.faces) == fb  # the sphere has more faces
    assert np.allclose(cm.vertices, v[cm.vertex_index])
    assert np.array_equal(cm.vertex_index[cm.faces], f[cm.face_index])
    assert cm.report["components"] == 2 and cm.report["dropped_faces"] == fa


def test_refuse_several_components():
    v, f, *_ = _two_boxes()
    with pytest.raises(MeshError, match="2 connected components"):
        clean_mesh(v, f, components="refuse", name="scan.obj")


def test_nan_vertices_and_bad_indices_are_named():
    v, f, *_ = _two_boxes()
    v = v.copy()
    v[3] = np.nan
    with pytest.raises(MeshError, match=r"scan.obj: 1 vertices are NaN.*vertex 3"):
        check_mesh(v, f, "scan.obj")
    with pytest.raises(MeshError, match="face indices"):
        check_mesh(np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(MeshError, match=r"shape \(N, 3\)"):
        check_mesh(np.zeros((3, 2)), np.array([[0, 1, 2]]))


def test_degenerate_faces_are_dropped_and_reported():
    m = trimesh.creation.icosphere(subdivisions=1)
    f = np.vstack([m.faces, [[0, 0, 1]], [[0, 1, 0]]])
    cm = clean_mesh(m.vertices, f)
    assert cm.report["degenerate_faces"] == 2 and len(cm.faces) == len(m.faces)


def test_non_manifold_edge_is_refused():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
    f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])  # edge (0,1) in three faces
    with pytest.raises(MeshError, match="non-manifold"):
        clean_mesh(v, f)


def test_edges_adjacency_and_boundary_of_a_fan():
    # a square split into 4 triangles around a centre vertex 4
    f = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    e, counts = edges(f)
    assert len(e) == 8 and counts.max() == 2 and (counts == 1).sum() == 4
    adj = face_adjacency(f).toarray()
    assert adj.sum() == 8 and adj[0, 1] == 1 and adj[0, 2] == 0
    loops = boundary_loops(f)
    assert len(loops) == 1 and sorted(loops[0].tolist()) == [0, 1, 2, 3]
    assert loops[0].tolist() == [0, 1, 2, 3]  # follows the faces' orientation
