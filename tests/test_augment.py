"""Random 3-D rotation augmentation: proper rotations, norms kept, acc and gyro rotated together."""

from __future__ import annotations

import torch

from crossmodal_har.models.augment import random_rotation, random_rotation_matrices, rotate


def test_matrices_are_proper_rotations_and_uniform():
    r = random_rotation_matrices(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(2000, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(2000, dtype=torch.float64), atol=1e-12)
    # Haar-uniform rotations average to the zero matrix (a biased sampler, e.g. near identity, does not)
    assert r.mean(0).abs().max() < 0.05


def test_random_rotation_preserves_norms_and_is_joint():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 250, 6, generator=g)
    y = random_rotation(x, generator=torch.Generator().manual_seed(2))
    assert y.shape == x.shape and y.dtype == x.dtype
    for sl in (slice(0, 3), slice(3, 6)):
        assert torch.allclose(y[..., sl].norm(dim=-1), x[..., sl].norm(dim=-1), atol=1e-5)
    assert not torch.allclose(y, x, atol=1e-3)
    # Recover each window's rotation from acc by least squares, check it is a proper rotation and
    # that the same matrix maps gyro.
    sol = torch.linalg.lstsq(x[..., 0:3].double(), y[..., 0:3].double()).solution  # x R^T = y
    rt = sol
    assert torch.allclose(torch.linalg.det(rt), torch.ones(16, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(x[..., 3:6].double() @ rt, y[..., 3:6].double(), atol=1e-4)


def test_same_generator_seed_same_rotation_and_per_window_differs():
    x = torch.randn(2, 10, 6).repeat(1, 1, 1)
    x[1] = x[0]
    a = random_rotation(x, generator=torch.Generator().manual_seed(5))
    b = random_rotation(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # one rotation per window, not per batch


def test_rotate_known_matrix():
    rz = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # 90° about z
    x = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 2.0, 0.0]]])
    assert torch.allclose(rotate(x, rz), torch.tensor([[[0.0, 1.0, 0.0, -2.0, 0.0, 0.0]]]))
