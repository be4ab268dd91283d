"""Triangle meshes (OBJ) as a signed-distance volume (R, R, R, 1): negative inside.

The mesh is scaled uniformly so that its bounding box spans [-0.9, 0.9] on its longest axis
(centred), and sampled on the grid linspace(-1, 1, R) per axis; grid axis a is the mesh's
coordinate a. The volume is computed block by block: distance from the exact point-triangle
distance to candidate triangles found with a k-d tree; inside/outside from the parity of ray
crossings along each of the three axes, by majority vote (a ray that grazes an edge spoils one
vote, not the sign). A mesh with holes is closed first (a fan of triangles around the centre of
each boundary loop), since ray parity needs a closed surface; the user is told.
"""

from pathlib import Path

import numpy as np

from nint_dist.errors import UserError
from nint_dist.sources import Source

FIT = 0.9
"""Half-extent of the mesh's longest bounding-box side in the [-1, 1] domain."""
CANDIDATES = 8
"""Nearest surface samples whose triangles are measured exactly."""
RAY_JITTER = (1.234567e-7, 7.654321e-8)
"""Offsets of the parity rays from the grid lines, so that they miss edges and vertices."""


def parse_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] float64 and triangles [F, 3] int64 (polygons fanned); UserError if malformed."""
    vertices, faces = [], []
    try:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if line.startswith("v "):
                    parts = line.split()
                    if len(parts) < 4:
                        raise UserError(f"{path}:{number}: a vertex needs three coordinates")
                    vertices.append((float(parts[1]), float(parts[2]), float(parts[3])))
                elif line.startswith("f "):
                    idx = [int(p.split("/")[0]) for p in line.split()[1:]]
                    if len(idx) < 3:
                        raise UserError(f"{path}:{number}: a face needs at least three vertices")
                    idx = [i - 1 if i > 0 else len(vertices) + i for i in idx]
                    faces.extend((idx[0], idx[j], idx[j + 1]) for j in range(1, len(idx) - 1))
    except (UnicodeDecodeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{path} is not a readable OBJ mesh ({str(e).splitlines()[0]})") from None
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(t) == 0:
        raise UserError(f"{path} holds no triangles")
    if not np.isfinite(v).all():
        raise UserError(f"{path}: vertex coordinates hold NaN or inf")
    if t.min() < 0 or t.max() >= len(v):
        raise UserError(f"{path}: faces refer to vertices that do not exist (truncated file?)")
    return v, t


def boundary_loops(triangles: np.ndarray) -> tuple[list[list[int]], int]:
    """Closed loops of boundary half-edges (edges used by one triangle), and the number of
    non-manifold edges (used by more than two). A watertight mesh has neither."""
    half = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    undirected = np.sort(half, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    uses = counts[inverse.ravel()]
    non_manifold = int((counts > 2).sum())
    successor = {int(a): int(b) for a, b in half[uses == 1]}
    loops = []
    while successor:
        start, nxt = successor.popitem()
        loop = [start]
        while nxt is not None and nxt != start:
            loop.append(nxt)
            nxt = successor.pop(nxt, None)
        loops.append(loop)
    return loops, non_manifold


def watertight_note(name: str, loops: list[list[int]], non_manifold: int) -> str | None:
    """What a mesh that is not watertight was found to have and what was done about it (None for
    a watertight mesh)."""
    if not loops and not non_manifold:
        return None
    found, done = [], []
    if loops:
        boundary = sum(len(loop) for loop in loops)
        found.append(f"{len(loops)} hole{'s' * (len(loops) > 1)} ({boundary} boundary edges)")
        done.append("closed each hole with a fan of triangles around its centre")
    else:
        found.append("no holes")
    if non_manifold:
        found.append(
            f"{non_manifold} non-manifold edge{'s' * (non_manifold > 1)} (shared by more than two triangles)"
        )
        done.append("kept the non-manifold edges as they are")
    done.append("inside/outside is a majority vote of rays along the three axes")
    return f"{name} is not watertight: {', '.join(found)}; " + "; ".join(done)


def close_holes(vertices: np.ndarray, triangles: np.ndarray, loops: list[list[int]]):
    """Add a vertex at each loop's centre and a fan of triangles, oriented against the loop's
    edges so that the orientation of the surface carries over."""
    new_vertices, new_triangles = [vertices], [triangles]
    next_index = len(vertices)
    for loop in loops:
        if len(loop) < 3:
            continue
        centre = vertices[loop].mean(axis=0, keepdims=True)
        ring = np.asarray(loop)
        fan = np.stack([np.roll(ring, -1), ring, np.full_like(ring, next_index)], axis=1)
        new_vertices.append(centre)
        new_triangles.append(fan)
        next_index += 1
    return np.concatenate(new_vertices), np.concatenate(new_triangles)


def normalise(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre the bounding box and scale its longest side to [-FIT, FIT]."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centre = 0.5 * (lo + hi)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise UserError("the mesh is flat or a single point")
    scale = 2 * FIT / extent
    return (vertices - centre) * scale, centre, scale


def point_triangle_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact distance from points p[n, 3] to triangles (a, b, c)[n, 3]: the closest point by the
    Voronoi region of the triangle it falls in (vertex, edge or face)."""

    def dot(x, y):
        return np.einsum("ij,ij->i", x, y)

    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        q = a + ab * (vb / denom)[:, None] + ac * (vc / denom)[:, None]  # inside the face
        regions = [  # lowest precedence first: later ones overwrite
            (
                (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
                lambda: b + ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None] * (c - b),
            ),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), lambda: a + (d2 / (d2 - d6))[:, None] * ac),
            ((d6 >= 0) & (d5 <= d6), lambda: c),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), lambda: a + (d1 / (d1 - d3))[:, None] * ab),
            ((d3 >= 0) & (d4 <= d3), lambda: b),
            ((d1 <= 0) & (d2 <= 0), lambda: a),
        ]
        for mask, point in regions:
            if mask.any():
                q = np.where(mask[:, None], point(), q)
    dist = np.linalg.norm(p - q, axis=1)
    bad = ~np.isfinite(dist)  # degenerate triangle: fall back to its nearest vertex
    if bad.any():
        corners = np.stack([a[bad], b[bad], c[bad]], axis=1)
        dist[bad] = np.linalg.norm(corners - p[bad][:, None], axis=2).min(axis=1)
    return dist


class SignedDistance:
    """The signed-distance field of a closed mesh on the grid linspace(-1, 1, R)³, by blocks."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, resolution: int):
        from scipy.spatial import cKDTree

        self.v, self.t, self.r = vertices, triangles, resolution
        self.axis = np.linspace(-1.0, 1.0, resolution)
        spacing = 2.0 / (resolution - 1)
        samples, owners = surface_samples(vertices, triangles, 2 * spacing)
        # an unbalanced tree answers queries from far off the surface many times faster
        self.tree = cKDTree(samples, balanced_tree=False, compact_nodes=False)
        self.owners = owners
        self.hits = [ray_hits(vertices, triangles, self.axis, axis) for axis in range(3)]

    def block(self, lo: int, hi: int) -> np.ndarray:
        """SDF at grid rows lo..hi-1 of the first axis, [hi - lo, R, R] float32."""
        r = self.r
        i, j, k = np.meshgrid(np.arange(lo, hi), np.arange(r), np.arange(r), indexing="ij")
        points = np.stack([self.axis[i], self.axis[j], self.axis[k]], axis=-1).reshape(-1, 3)
        _, nearest = self.tree.query(points, k=CANDIDATES)
        tri = self.t[self.owners[nearest]]  # [n, k, 3]
        n = len(points)
        rep = np.repeat(points, CANDIDATES, axis=0)
        flat = tri.reshape(-1, 3)
        dist = point_triangle_distance(rep, self.v[flat[:, 0]], self.v[flat[:, 1]], self.v[flat[:, 2]])
        dist = dist.reshape(n, CANDIDATES).min(axis=1)
        votes = self._inside(0, j, k, i).astype(np.int8) + self._inside(1, i, k, j) + self._inside(2, i, j, k)
        sign = np.where(votes.reshape(-1) >= 2, -1.0, 1.0)
        return (sign * dist).reshape(hi - lo, r, r).astype(np.float32)

    def _inside(self, axis: int, u: np.ndarray, v: np.ndarray, along: np.ndarray) -> np.ndarray:
        """Odd number of crossings before the point on the ray (u, v) parallel to ``axis``."""
        keys = self.hits[axis]
        ray = (u * self.r + v).astype(np.float64)
        below = np.searchsorted(keys, ray + (self.axis[along] + 2.0) / 8.0)
        start = np.searchsorted(keys, ray)
        return ((below - start) % 2 == 1).reshape(-1)


def surface_samples(vertices: np.ndarray, triangles: np.ndarray, spacing: float):
    """Points on every triangle no farther apart than about ``spacing`` (centroids at least),
    with the triangle each belongs to: the k-d tree's candidates."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    longest = np.maximum.reduce(
        [np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1), np.linalg.norm(a - c, axis=1)]
    )
    steps = np.clip(np.ceil(longest / spacing).astype(np.int64), 1, 64)
    points, owners = [(a + b + c) / 3.0], [np.arange(len(triangles))]
    for m in np.unique(steps[steps > 1]):
        ids = np.nonzero(steps == m)[0]
        s, t = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
        keep = s + t <= m
        s, t = s[keep] / m, t[keep] / m
        pts = a[ids, None] + (b - a)[ids, None] * s[None, :, None] + (c - a)[ids, None] * t[None, :, None]
        points.append(pts.reshape(-1, 3))
        owners.append(np.repeat(ids, len(s)))
    return np.concatenate(points), np.concatenate(owners)


def ray_hits(vertices: np.ndarray, triangles: np.ndarray, grid: np.ndarray, axis: int) -> np.ndarray:
    """Sorted keys ``ray + (position + 2) / 8`` of every crossing of the rays parallel to ``axis``
    through the grid points of the other two axes (ray = u * R + v) with the surface."""
    r = len(grid)
    spacing = grid[1] - grid[0]
    others = [a for a in range(3) if a != axis]
    tri = vertices[triangles]  # [F, 3 corners, 3]
    pu, pv, pw = tri[..., others[0]], tri[..., others[1]], tri[..., axis]
    u_lo = np.ceil((pu.min(axis=1) + 1.0) / spacing).astype(np.int64).clip(0, r)
    u_hi = np.floor((pu.max(axis=1) + 1.0) / spacing).astype(np.int64).clip(-1, r - 1)
    v_lo = np.ceil((pv.min(axis=1) + 1.0) / spacing).astype(np.int64).clip(0, r)
    v_hi = np.floor((pv.max(axis=1) + 1.0) / spacing).astype(np.int64).clip(-1, r - 1)
    nu, nv = (u_hi - u_lo + 1).clip(0), (v_hi - v_lo + 1).clip(0)
    count = nu * nv
    face = np.repeat(np.arange(len(triangles)), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    gu = u_lo[face] + offset // nv[face].clip(1)
    gv = v_lo[face] + offset % nv[face].clip(1)
    x = grid[gu] + RAY_JITTER[0]
    y = grid[gv] + RAY_JITTER[1]
    (x0, x1, x2), (y0, y1, y2) = pu[face].T, pv[face].T
    with np.errstate(divide="ignore", invalid="ignore"):
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        l1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / area
        l2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / area
    l0 = 1.0 - l1 - l2
    hit = (area != 0) & (l0 > 0) & (l1 > 0) & (l2 > 0)
    w0, w1, w2 = pw[face[hit]].T
    position = l0[hit] * w0 + l1[hit] * w1 + l2[hit] * w2
    keys = (gu[hit] * r + gv[hit]).astype(np.float64) + (position + 2.0) / 8.0
    return np.sort(keys)


def read_mesh(path: Path, resolution: int) -> Source:
    """A mesh as a lazily computed signed-distance volume."""
    import dask.array as da

    if resolution < 8:
        raise UserError(f"mesh resolution must be at least 8, not {resolution}")
    vertices, triangles = parse_obj(path)
    loops, non_manifold = boundary_loops(triangles)
    note = watertight_note(path.name, loops, non_manifold)
    notes = [] if note is None else [note]
    if loops:
        vertices, triangles = close_holes(vertices, triangles, loops)
    vertices, centre, scale = normalise(vertices)
    field = SignedDistance(vertices, triangles, resolution)
    rows = max(1, min(resolution // 16, (1 << 20) // (resolution * resolution)))
    chunks = (
        tuple(min(rows, resolution - lo) for lo in range(0, resolution, rows)),
        (resolution,),
        (resolution,),
    )

    def block(block_info=None):
        (lo, hi), _, _ = block_info[None]["array-location"]
        return field.block(lo, hi)

    data = da.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    attrs = {
        "mesh": {"centre": centre.tolist(), "scale": scale, "watertight": not notes, "resolution": resolution}
    }
    return Source(data[..., None], "volume", ((-1.0, 1.0),) * 3, None, notes=notes, attrs=attrs)
