"""Vectorised numpy ray caster for the synthetic multi-task scenes.

A pinhole camera looks (pitched down) at a textured floor, a textured back wall of finite
height (sky above it) and 3-6 primitives (spheres, yawed boxes, vertical cylinders) lit by
one directional light with hard shadows. Every label is exact: it comes from the same ray
hits that produce the picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLOOR, WALL, SPHERE, BOX, CYLINDER = range(5)
_EPS = 1e-4
_INF = np.inf


@dataclass
class _Hit:
    """Nearest hit per ray: distance, world normal, texture parity, face and object id."""

    t: np.ndarray
    normal: np.ndarray
    parity: np.ndarray
    face: np.ndarray
    obj: np.ndarray


@dataclass
class _Object:
    """One primitive: its class, geometry parameters and texture."""

    cls: int
    center: np.ndarray  # base centre on the floor for box/cylinder, centre for sphere
    size: np.ndarray  # sphere (r,), box (hx, hy, hz), cylinder (r, h)
    yaw: float
    color: np.ndarray
    tex_scale: float  # 0: untextured


def _sphere(o: np.ndarray, d: np.ndarray, ob: _Object):
    c = ob.center
    r = ob.size[0]
    oc = o - c
    a = np.einsum("ij,ij->i", d, d)
    b = np.einsum("ij,ij->i", d, oc)
    cc = np.einsum("ij,ij->i", oc, oc) - r * r
    disc = b * b - a * cc
    ok = disc >= 0
    t = np.full(len(d), _INF)
    t[ok] = (-b[ok] - np.sqrt(disc[ok])) / a[ok]
    t[t <= _EPS] = _INF
    return t


def _sphere_attrs(p: np.ndarray, ob: _Object):
    n = (p - ob.center) / ob.size[0]
    if ob.tex_scale <= 0:
        par = np.zeros(len(p), dtype=np.int64)
    else:
        k = max(2, int(round(3.0 / ob.tex_scale)))
        lon = np.arctan2(n[:, 2], n[:, 0])
        lat = np.arcsin(np.clip(n[:, 1], -1, 1))
        par = (np.floor(lon * k / math.pi) + np.floor(lat * k / math.pi)).astype(np.int64) & 1
    return n, par, np.zeros(len(p), dtype=np.int64)


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _box_local(o: np.ndarray, d: np.ndarray, ob: _Object):
    rot = _yaw_matrix(ob.yaw)
    centre = ob.center + np.array([0.0, ob.size[1], 0.0])
    return (o - centre) @ rot, d @ rot, rot, centre


def _box(o: np.ndarray, d: np.ndarray, ob: _Object):
    ol, dl, _, _ = _box_local(o, d, ob)
    h = ob.size
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dl
        t1 = (-h - ol) * inv
        t2 = (h - ol) * inv
    tlo = np.nan_to_num(np.minimum(t1, t2), nan=-_INF)
    thi = np.nan_to_num(np.maximum(t1, t2), nan=_INF)
    tmin = tlo.max(axis=1)
    tmax = thi.min(axis=1)
    hit = (tmax >= tmin) & (tmin > _EPS)
    return np.where(hit, tmin, _INF)


def _box_attrs(p: np.ndarray, d: np.ndarray, ob: _Object):
    ol, dl, rot, _ = _box_local(p, d, ob)
    h = ob.size
    # The face is the axis whose slab the point lies on (largest relative coordinate).
    rel = np.abs(ol) / h
    axis = rel.argmax(axis=1)
    sign = np.sign(ol[np.arange(len(p)), axis])
    sign[sign == 0] = 1
    nl = np.zeros_like(ol)
    nl[np.arange(len(p)), axis] = sign
    n = nl @ rot.T
    if ob.tex_scale <= 0:
        par = np.zeros(len(p), dtype=np.int64)
    else:
        par = np.floor((ol + h) / ob.tex_scale).astype(np.int64).sum(axis=1) & 1
    face = axis * 2 + (sign > 0)
    return n, par, face.astype(np.int64)


def _cylinder(o: np.ndarray, d: np.ndarray, ob: _Object):
    r, hgt = ob.size
    cx, cz = ob.center[0], ob.center[2]
    ox, oz = o[:, 0] - cx, o[:, 2] - cz
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = ox * d[:, 0] + oz * d[:, 2]
    c = ox * ox + oz * oz - r * r
    disc = b * b - a * c
    t = np.full(len(d), _INF)
    ok = (disc >= 0) & (a > 1e-12)
    ts = (-b[ok] - np.sqrt(disc[ok])) / a[ok]
    y = o[ok, 1] + ts * d[ok, 1]
    good = (ts > _EPS) & (y >= 0) & (y <= hgt)
    idx = np.flatnonzero(ok)[good]
    t[idx] = ts[good]
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = (hgt - o[:, 1]) / d[:, 1]
    px = ox + tt * d[:, 0]
    pz = oz + tt * d[:, 2]
    cap = (tt > _EPS) & np.isfinite(tt) & (px * px + pz * pz <= r * r)
    return np.where(cap & (tt < t), tt, t)


def _cylinder_attrs(p: np.ndarray, ob: _Object):
    r, hgt = ob.size
    dx, dz = p[:, 0] - ob.center[0], p[:, 2] - ob.center[2]
    top = p[:, 1] >= hgt - 1e-6
    n = np.stack([dx / r, np.zeros(len(p)), dz / r], axis=1)
    n[top] = (0.0, 1.0, 0.0)
    if ob.tex_scale <= 0:
        par = np.zeros(len(p), dtype=np.int64)
    else:
        k = max(2, int(round(3.0 / ob.tex_scale)))
        ang = np.arctan2(dz, dx)
        side = (np.floor(ang * k / math.pi) + np.floor(p[:, 1] / ob.tex_scale)).astype(np.int64)
        cap = (np.floor(dx / ob.tex_scale) + np.floor(dz / ob.tex_scale)).astype(np.int64)
        par = np.where(top, cap, side) & 1
    return n, par, top.astype(np.int64)


_INTERSECT = {SPHERE: _sphere, BOX: _box, CYLINDER: _cylinder}


@dataclass
class SceneParams:
    """Everything random about one scene (drawn once from the seed)."""

    cam_height: float
    pitch: float
    fov_y: float
    wall_dist: float
    wall_yaw: float
    wall_height: float
    floor_tile: float
    wall_tile: float
    floor_color: np.ndarray
    wall_color: np.ndarray
    sky_color: np.ndarray
    light: np.ndarray
    ambient: float
    objects: list[_Object]


def _random_color(rng: np.random.Generator) -> np.ndarray:
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.35, 0.95)
    val = rng.uniform(0.55, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_scene(rng: np.random.Generator, aspect: float = 1.0, *, max_objects: int = 6) -> SceneParams:
    """Draw a random scene: camera, room, light and 3..max_objects non-overlapping primitives."""
    fov_y = math.radians(rng.uniform(50, 62))
    pitch = math.radians(rng.uniform(8, 20))
    tan_x = math.tan(fov_y / 2) * aspect
    objects: list[_Object] = []
    n_obj = int(rng.integers(3, max(3, max_objects) + 1))
    footprints: list[tuple[float, float, float]] = []
    for _ in range(n_obj):
        for _attempt in range(30):
            cls = int(rng.choice([SPHERE, BOX, CYLINDER]))
            z = rng.uniform(3.5, 12.0)
            x = rng.uniform(-0.85, 0.85) * z * tan_x
            if cls == SPHERE:
                size = np.array([rng.uniform(0.35, 1.1)])
                center = np.array([x, size[0], z])
                foot = size[0]
            elif cls == BOX:
                size = rng.uniform([0.3, 0.3, 0.3], [1.0, 1.2, 1.0])
                center = np.array([x, 0.0, z])
                foot = float(np.hypot(size[0], size[2]))
            else:
                size = np.array([rng.uniform(0.25, 0.8), rng.uniform(0.6, 2.6)])
                center = np.array([x, 0.0, z])
                foot = size[0]
            if all((x - fx) ** 2 + (z - fz) ** 2 > (foot + fr + 0.1) ** 2 for fx, fz, fr in footprints):
                footprints.append((x, z, foot))
                tex = 0.0 if rng.uniform() < 0.3 else rng.uniform(0.25, 0.7)
                objects.append(_Object(cls, center, size, rng.uniform(-math.pi, math.pi),
                                       _random_color(rng), tex))
                break
    elev = math.radians(rng.uniform(30, 70))
    azim = rng.uniform(-math.pi, math.pi)
    light = np.array([math.cos(elev) * math.cos(azim), math.sin(elev), math.cos(elev) * math.sin(azim)])
    return SceneParams(
        cam_height=rng.uniform(1.4, 2.6), pitch=pitch, fov_y=fov_y,
        wall_dist=rng.uniform(14, 22), wall_yaw=rng.uniform(-0.45, 0.45),
        wall_height=rng.uniform(2.5, 7.0), floor_tile=rng.uniform(0.8, 2.2),
        wall_tile=rng.uniform(1.5, 3.5), floor_color=_random_color(rng) * 0.9,
        wall_color=_random_color(rng), sky_color=np.array([0.55, 0.7, 0.95]) + rng.uniform(-0.1, 0.05, 3),
        light=light, ambient=rng.uniform(0.25, 0.45), objects=objects)


def _wall_geometry(sp: SceneParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.array([math.sin(sp.wall_yaw), 0.0, -math.cos(sp.wall_yaw)])
    p0 = np.array([0.0, 0.0, sp.wall_dist])
    tangent = np.array([math.cos(sp.wall_yaw), 0.0, math.sin(sp.wall_yaw)])
    return n, p0, tangent


def _cast(o: np.ndarray, d: np.ndarray, sp: SceneParams, *, any_hit: bool = False):
    """Nearest hit of each ray among wall, primitives and (unless ``any_hit``) the floor.

    Returns the hit distance ``t`` and the object index (-2 floor, -1 wall, i primitive,
    -3 nothing); with ``any_hit`` only the distance matters (shadow rays).
    """
    n_rays = len(d)
    best = np.full(n_rays, _INF)
    who = np.full(n_rays, -3, dtype=np.int64)
    if not any_hit:
        with np.errstate(divide="ignore", invalid="ignore"):
            tf = -o[:, 1] / d[:, 1]
        tf = np.where((d[:, 1] < 0) & (tf > _EPS), tf, _INF)
        upd = tf < best
        best[upd], who[upd] = tf[upd], -2
    wn, wp, _ = _wall_geometry(sp)
    den = d @ wn
    with np.errstate(divide="ignore", invalid="ignore"):
        tw = ((wp - o) @ wn) / den
    yw = o[:, 1] + tw * d[:, 1]
    tw = np.where((den < 0) & (tw > _EPS) & (yw >= 0) & (yw <= sp.wall_height), tw, _INF)
    upd = tw < best
    best[upd], who[upd] = tw[upd], -1
    for i, ob in enumerate(sp.objects):
        t = _INTERSECT[ob.cls](o, d, ob)
        upd = t < best
        best[upd], who[upd] = t[upd], i
    return best, who


def render(sp: SceneParams, height: int, width: int, rng: np.random.Generator, *, noise: float = 0.01):
    """Render one scene: image and exact labels as numpy arrays (see ``synthetic`` docs)."""
    tan_y = math.tan(sp.fov_y / 2)
    tan_x = tan_y * width / height
    u = ((np.arange(width) + 0.5) / width * 2 - 1) * tan_x
    v = (1 - (np.arange(height) + 0.5) / height * 2) * tan_y
    uu, vv = np.meshgrid(u, v)
    cp, sn = math.cos(sp.pitch), math.sin(sp.pitch)
    right = np.array([1.0, 0.0, 0.0])
    up = np.array([0.0, cp, sn])
    fwd = np.array([0.0, -sn, cp])
    # Camera-frame direction (u, v, 1): the hit distance t is then the z-buffer depth.
    d = uu.reshape(-1, 1) * right + vv.reshape(-1, 1) * up + fwd
    o = np.broadcast_to(np.array([0.0, sp.cam_height, 0.0]), d.shape)
    t, who = _cast(o, d, sp)
    n_rays = len(d)
    hit = who > -3
    p = o + d * np.where(hit, t, 0.0)[:, None]
    normal = np.zeros((n_rays, 3))
    parity = np.zeros(n_rays, dtype=np.int64)
    face = np.zeros(n_rays, dtype=np.int64)
    albedo = np.zeros((n_rays, 3))
    seg = np.full(n_rays, -1, dtype=np.int64)

    m = who == -2
    normal[m] = (0.0, 1.0, 0.0)
    parity[m] = (np.floor(p[m, 0] / sp.floor_tile) + np.floor(p[m, 2] / sp.floor_tile)).astype(np.int64) & 1
    albedo[m] = sp.floor_color
    seg[m] = FLOOR
    m = who == -1
    wn, wp, wt = _wall_geometry(sp)
    normal[m] = wn
    along = (p[m] - wp) @ wt
    row = np.floor(p[m, 1] / (sp.wall_tile * 0.5)).astype(np.int64)
    parity[m] = (np.floor(along / sp.wall_tile + 0.5 * (row & 1)).astype(np.int64) + row) & 1
    albedo[m] = sp.wall_color
    seg[m] = WALL
    for i, ob in enumerate(sp.objects):
        m = who == i
        if not m.any():
            continue
        if ob.cls == SPHERE:
            n, par, fc = _sphere_attrs(p[m], ob)
        elif ob.cls == BOX:
            n, par, fc = _box_attrs(p[m], d[m], ob)
        else:
            n, par, fc = _cylinder_attrs(p[m], ob)
        normal[m], parity[m], face[m] = n, par, fc
        albedo[m] = ob.color
        seg[m] = ob.cls
    albedo = albedo * np.where(parity[:, None] == 1, 0.55, 1.0)

    # Lighting with hard shadows (shadow rays only where the surface faces the light).
    ndl = np.clip(normal @ sp.light, 0.0, None)
    lit = np.zeros(n_rays, dtype=bool)
    cand = hit & (ndl > 0)
    if cand.any():
        so = p[cand] + normal[cand] * 1e-3
        sd = np.broadcast_to(sp.light, so.shape)
        st, _ = _cast(so, sd, sp, any_hit=True)
        lit[np.flatnonzero(cand)] = ~np.isfinite(st)
    shade = sp.ambient + (1 - sp.ambient) * ndl * lit
    img = albedo * shade[:, None]
    sky = ~hit
    grad = np.clip(vv.reshape(-1)[sky] / tan_y, 0, 1)[:, None]
    img[sky] = sp.sky_color * (1 - 0.35 * grad) + 0.35 * grad
    if noise > 0:
        img = img + rng.normal(0, noise, img.shape)
    img = np.clip(img, 0, 1)

    # Camera-frame normals: x right, y up, z towards the viewer.
    ncam = np.stack([normal @ right, normal @ up, -(normal @ fwd)], axis=1)
    ncam[sky] = 0.0
    depth = np.where(hit, t, 0.0)

    # Texture edges: a pixel is an edge where its (object, face, texture, shadow) key
    # differs from its right or lower neighbour.
    key = ((who + 3) * 64 + face * 4 + parity * 2 + (lit & (ndl > 0))).reshape(height, width)
    edge = np.zeros((height, width), dtype=bool)
    edge[:, :-1] |= key[:, :-1] != key[:, 1:]
    edge[:-1, :] |= key[:-1, :] != key[1:, :]

    # Saliency: the visible pixels of the primitive nearest to the camera.
    sal = np.zeros(n_rays, dtype=bool)
    visible = [i for i in range(len(sp.objects)) if (who == i).any()]
    if visible:
        cam = np.array([0.0, sp.cam_height, 0.0])
        near = min(visible, key=lambda i: float((sp.objects[i].center - cam) @ fwd))
        sal = who == near

    return {
        "image": img.reshape(height, width, 3).transpose(2, 0, 1),
        "segment_semantic": seg.reshape(height, width),
        "depth_zbuffer": depth.reshape(1, height, width),
        "normal": ncam.reshape(height, width, 3).transpose(2, 0, 1),
        "edge_texture": edge.reshape(1, height, width),
        "saliency": sal.reshape(1, height, width),
        # not a task: which primitive each pixel shows (-1: floor, wall, sky), for instance labels
        "instance": np.where(who >= 0, who, -1).reshape(height, width),
        "instance_class": np.array([ob.cls for ob in sp.objects], dtype=np.int64),
    }
