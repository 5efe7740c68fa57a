"""Synthetic putative correspondences between two views related by a random homography.

Inliers are points of image 1 mapped by the homography (with Gaussian pixel noise) and kept
when they land inside image 2; outliers pair a point of image 1 with an independent random
point of image 2. Coordinates are normalised to about [-1, 1] by the image centre and half
the longer side, as learned-correspondence networks do with camera intrinsics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from n3seq._checks import check_finite, check_floating, check_int, check_real

#: Rounds of candidate inliers drawn per set before giving up (each draws 4× the inliers
#: still needed; with sane settings one or two rounds suffice).
MAX_INLIER_ROUNDS = 100


def _check_points(x: Tensor, name: str, rows: int | None = None) -> None:
    check_floating(x, name)
    if x.dim() != 2 or x.shape[1] != 2 or (rows is not None and x.shape[0] != rows):
        layout = f"({rows}, 2)" if rows is not None else "(N, 2)"
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")
    check_finite(x, name)


def _check_pair(value: object, name: str, kind: str = "int") -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair of {kind}s, got {value!r}")
    if kind == "int":
        return tuple(check_int(f"{name}[{i}]", v, min=1) for i, v in enumerate(value))
    return tuple(check_real(f"{name}[{i}]", v) for i, v in enumerate(value))


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")


def homography_from_points(src: Tensor, dst: Tensor) -> Tensor:
    """The 3×3 homography (``H[2, 2] = 1``) that maps the 4 points ``src`` to ``dst``.

    Raises:
        TypeError: a point set is not a floating tensor.
        ValueError: wrong shapes, NaN/inf, or degenerate points (e.g. three collinear) for
            which no unique homography exists.

    Shape:
        - src, dst: :math:`(4, 2)`; output: :math:`(3, 3)`
    """
    _check_points(src, "src", 4)
    _check_points(dst, "dst", 4)
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.double().tolist(), dst.double().tolist()):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    try:
        h = torch.linalg.solve(torch.tensor(rows), torch.tensor(rhs))
    except RuntimeError as err:  # torch.linalg.LinAlgError: singular system
        raise ValueError(f"no unique homography maps src to dst: the points are degenerate "
                         f"(coincident or three collinear): src={src.tolist()}") from err
    if not bool(torch.isfinite(h).all()):
        raise ValueError(f"no finite homography maps src to dst (degenerate points): "
                         f"src={src.tolist()}, dst={dst.tolist()}")
    return torch.cat([h, h.new_ones(1)]).view(3, 3)


def apply_homography(h: Tensor, points: Tensor) -> Tensor:
    """Maps ``(N, 2)`` points by the 3×3 homography ``h``.

    Points mapped to infinity (on the homography's vanishing line) come back as ±inf/NaN.

    Raises:
        TypeError: ``h`` or ``points`` is not a floating tensor.
        ValueError: ``h`` is not 3×3, ``points`` not ``(N, 2)``, or either is not finite.
    """
    check_floating(h, "h")
    if h.shape != (3, 3):
        raise ValueError(f"h must have shape (3, 3), got {tuple(h.shape)}")
    check_finite(h, "h")
    _check_points(points, "points")
    homog = torch.cat([points, points.new_ones(len(points), 1)], dim=1) @ h.T.to(points)
    return homog[:, :2] / homog[:, 2:]


def random_homography(size: tuple[int, int] = (640, 480), *, max_angle: float = 30.0,
                      scale: tuple[float, float] = (0.7, 1.3), perturb: float = 0.15,
                      generator: torch.Generator | None = None) -> Tensor:
    """A random homography of an image of ``size = (width, height)`` onto itself.

    The image corners are rotated by up to ``max_angle`` degrees and scaled about the centre,
    then each corner is moved by up to ``perturb`` times the image size (perspective).
    """
    w, h = _check_pair(size, "size")
    max_angle = check_real("max_angle", max_angle)
    lo, hi = _check_pair(scale, "scale", "float")
    if not 0 < lo <= hi:
        raise ValueError(f"scale must be a range (lo, hi) with 0 < lo <= hi, got {scale}")
    perturb = check_real("perturb", perturb)
    if perturb < 0:
        raise ValueError(f"perturb must be >= 0, got {perturb}")
    _check_generator(generator)
    corners = torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]], dtype=torch.float64)
    centre = corners.mean(0)
    u = torch.rand(7, generator=generator, dtype=torch.float64)
    angle = math.radians(max_angle) * (2 * u[0] - 1)
    s = lo + (hi - lo) * u[1]
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)],
                        [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    moved = (corners - centre) @ rot.T * s + centre
    jitter = (2 * torch.rand(4, 2, generator=generator, dtype=torch.float64) - 1)
    moved = moved + perturb * jitter * torch.tensor([w, h], dtype=torch.float64)
    return homography_from_points(corners, moved)


def make_correspondences(num_sets: int, *, min_points: int = 100, max_points: int = 300,
                         outlier_ratio: tuple[float, float] = (0.5, 0.9),
                         noise_px: float = 1.0, size: tuple[int, int] = (640, 480),
                         generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """A padded batch of correspondence sets with inlier labels.

    Args:
        num_sets: sets B.
        min_points: fewest correspondences in a set.
        max_points: most correspondences (the padded size N).
        outlier_ratio: each set's outlier fraction is uniform in this range.
        noise_px: standard deviation of the pixel noise on inliers.
        size: image ``(width, height)`` in pixels.
        generator: random generator.

    Returns:
        Dict with ``x`` ``(B, N, 4)`` normalised ``(x1, y1, x2, y2)`` (zero on padding),
        ``labels`` ``(B, N)`` bool (True = inlier), ``mask`` ``(B, N)`` bool (True = real),
        ``pixels`` ``(B, N, 4)`` the same points in pixels, ``homography`` ``(B, 3, 3)``
        and ``outlier_ratio`` ``(B,)`` (the realised fraction).

    Raises:
        TypeError: an argument has the wrong type (e.g. a float count).
        ValueError: a value out of range, or inliers that cannot be placed inside image 2
            (e.g. ``noise_px`` far larger than the image).

    Example:
        >>> batch = make_correspondences(2, min_points=20, max_points=30)
        >>> batch["x"].shape, batch["mask"].shape
        (torch.Size([2, 30, 4]), torch.Size([2, 30]))
    """
    num_sets = check_int("num_sets", num_sets, min=0)
    min_points = check_int("min_points", min_points, min=8)
    max_points = check_int("max_points", max_points)
    if max_points < min_points:
        raise ValueError(f"need min_points <= max_points, got {min_points} and {max_points}")
    lo, hi = _check_pair(outlier_ratio, "outlier_ratio", "float")
    if not 0 <= lo <= hi < 1:
        raise ValueError(f"outlier_ratio must be a range inside [0, 1), got {outlier_ratio}")
    noise_px = check_real("noise_px", noise_px)
    if noise_px < 0:
        raise ValueError(f"noise_px must be >= 0, got {noise_px}")
    w, h = _check_pair(size, "size")
    _check_generator(generator)
    wh = torch.tensor([w, h], dtype=torch.float64)
    pixels = torch.zeros(num_sets, max_points, 4, dtype=torch.float64)
    labels = torch.zeros(num_sets, max_points, dtype=torch.bool)
    mask = torch.zeros(num_sets, max_points, dtype=torch.bool)
    homographies, ratios = [], []
    for b in range(num_sets):
        n = int(torch.randint(min_points, max_points + 1, (1,), generator=generator))
        ratio = lo + (hi - lo) * float(torch.rand(1, generator=generator))
        n_in = max(4, round(n * (1 - ratio)))
        hom = random_homography(size, generator=generator)
        inliers = torch.empty(0, 4, dtype=torch.float64)
        for _ in range(MAX_INLIER_ROUNDS):  # keep inliers whose match lands inside image 2
            if len(inliers) >= n_in:
                break
            p1 = torch.rand(4 * n_in, 2, generator=generator, dtype=torch.float64) * wh
            p2 = apply_homography(hom, p1)
            p2 = p2 + noise_px * torch.randn(p2.shape, generator=generator, dtype=p2.dtype)
            inside = ((p2 >= 0) & (p2 <= wh)).all(1)
            inliers = torch.cat([inliers, torch.cat([p1, p2], 1)[inside]])
        if len(inliers) < n_in:
            raise ValueError(
                f"could not place {n_in} inliers inside image 2 in {MAX_INLIER_ROUNDS} rounds "
                f"(found {len(inliers)}): noise_px={noise_px} is too large for size={size}"
            )
        outliers = torch.rand(n - n_in, 4, generator=generator, dtype=torch.float64)
        outliers = outliers * torch.cat([wh, wh])
        points = torch.cat([inliers[:n_in], outliers])
        is_in = torch.arange(n) < n_in
        order = torch.randperm(n, generator=generator)
        pixels[b, :n], labels[b, :n], mask[b, :n] = points[order], is_in[order], True
        homographies.append(hom)
        ratios.append(1 - n_in / n)
    centre, half = torch.cat([wh, wh]) / 2, max(w, h) / 2
    x = ((pixels - centre) / half * mask[..., None]).float()
    homography = torch.stack(homographies) if homographies else torch.zeros(0, 3, 3)
    return {"x": x, "labels": labels, "mask": mask, "pixels": pixels.float(),
            "homography": homography.float(),
            "outlier_ratio": torch.tensor(ratios, dtype=torch.float32)}
