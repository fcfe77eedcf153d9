"""Batched image operations against torchvision's per-image functional transforms."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from cmp_plugins import image_ops as ops


def images(n: int = 6, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_colour_adjustments_match_torchvision_per_image() -> None:
    x = images()
    factors = torch.tensor([0.2, 0.5, 0.9, 1.0, 1.4, 1.8])
    shifts = torch.tensor([-0.5, -0.2, -0.01, 0.0, 0.15, 0.4])
    cases = [
        (ops.adjust_brightness(x, factors), TF.adjust_brightness, factors),
        (ops.adjust_contrast(x, factors), TF.adjust_contrast, factors),
        (ops.adjust_saturation(x, factors), TF.adjust_saturation, factors),
        (ops.adjust_hue(x, shifts), TF.adjust_hue, shifts),
    ]
    for got, reference, params in cases:
        for i in range(x.shape[0]):
            want = reference(x[i], float(params[i]))
            torch.testing.assert_close(got[i], want, atol=2e-5, rtol=0, msg=reference.__name__)


def test_gaussian_blur_matches_torchvision_and_sigma_zero_is_identity() -> None:
    x = images(4, 3, 20)
    sigma = torch.tensor([0.5, 1.0, 2.0, 0.0])
    got = ops.gaussian_blur(x, sigma, kernel_size=7)
    for i in range(3):
        want = TF.gaussian_blur(x[i], kernel_size=[7, 7], sigma=[float(sigma[i])] * 2)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[3], x[3])


def test_gaussian_blur_of_a_batch_all_blurred_and_the_device_path_with_sigma_zero() -> None:
    """Every image blurred (the whole batch in one convolution, as off the CPU), and the
    kernel path for sigma 0 that the CPU skips: a delta, so the image comes back as it was."""
    x = images(3, 3, 20)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    got = ops.gaussian_blur(x, sigma, kernel_size=7)
    for i in range(3):
        torch.testing.assert_close(got[i], TF.gaussian_blur(x[i], kernel_size=[7, 7], sigma=[float(sigma[i])] * 2),
                                   atol=1e-5, rtol=0)
    mixed = torch.tensor([0.0, 1.0, 0.0])
    whole_batch = ops._blur(x, mixed, kernel_size=7)
    torch.testing.assert_close(whole_batch, ops.gaussian_blur(x, mixed, kernel_size=7), atol=1e-6, rtol=0)
    torch.testing.assert_close(whole_batch[0], x[0], atol=1e-7, rtol=0)


def test_gaussian_blur_in_float64_uses_a_float64_kernel() -> None:
    x = images(2, 1, 12).double()
    sigma = torch.tensor([0.7, 1.3])  # float32: the kernel must still be computed in float64
    got = ops.gaussian_blur(x, sigma, kernel_size=5)
    for i in range(2):
        want = TF.gaussian_blur(x[i], kernel_size=[5, 5], sigma=[float(sigma[i])] * 2)
        torch.testing.assert_close(got[i], want, atol=1e-12, rtol=0)


def test_grey_images_pass_the_grayscale_ops_unchanged() -> None:
    grey = images(3, 1, 8)
    assert ops.grayscale(grey) is grey
    assert ops.to_grayscale_where_(grey, torch.tensor([True, False, True])) is grey
    assert torch.equal(ops.to_grayscale_where(grey, torch.tensor([True, True, True])), grey)


def test_solarize_inverts_from_the_threshold_on() -> None:
    x = torch.tensor([0.1, 0.25, 0.3, 0.9]).view(1, 1, 1, 4)
    got = ops.solarize_where(x, torch.tensor([True]), threshold=0.25)
    assert torch.equal(got, torch.cat([x[..., :1], 1.0 - x[..., 1:]], dim=-1))  # 0.25 itself is inverted
    assert torch.equal(ops.solarize_where(x, torch.tensor([False]), threshold=0.25), x)


def test_resized_crop_matches_torchvision_inside_the_box() -> None:
    x = images(3, 1, 28)
    boxes = torch.tensor([[4.0, 6.0, 16.0, 12.0], [0.0, 0.0, 28.0, 28.0], [10.0, 2.0, 14.0, 20.0]])
    flip = torch.tensor([False, False, True])
    got = ops.resized_crop(x, boxes, flip, size=20)
    for i in range(3):
        top, left, h, w = (int(v) for v in boxes[i])
        want = TF.resized_crop(x[i], top, left, h, w, [20, 20], antialias=False)
        if flip[i]:
            want = TF.horizontal_flip(want)
        # bilinear taps agree away from the box border (torchvision clamps at the crop edge)
        torch.testing.assert_close(got[i, :, 2:-2, 2:-2], want[:, 2:-2, 2:-2], atol=1e-5, rtol=0)


def test_full_box_without_flip_is_the_identity() -> None:
    x = images(2, 3, 12)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]] * 2)
    got = ops.resized_crop(x, boxes, torch.tensor([False, True]), size=12)
    torch.testing.assert_close(got[0], x[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(got[1], x[1].flip(-1), atol=1e-6, rtol=0)


def test_crop_boxes_lie_in_the_image_with_scale_and_ratio_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = ops.sample_crop_boxes(4096, 28, 36, (0.08, 1.0), (3 / 4, 4 / 3), g, torch.device("cpu"))
    top, left, h, w = boxes.unbind(1)
    eps = 1e-4
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 28 + eps).all() and (left + w <= 36 + eps).all()
    area = h * w / (28 * 36)
    assert (area >= 0.08 - eps).all() and (area <= 1 + eps).all()
    ratio = w / h
    assert (ratio >= 3 / 4 - eps).all() and (ratio <= 4 / 3 + eps).all()
    assert boxes.unique(dim=0).shape[0] == 4096


def test_crop_boxes_fall_back_to_a_central_crop_when_nothing_fits() -> None:
    g = torch.Generator().manual_seed(0)
    # ratio 3..4 can never fit a 10x10 image at full area: fallback is width 10, height 10/3
    boxes = ops.sample_crop_boxes(8, 10, 10, (1.0, 1.0), (3.0, 4.0), g, torch.device("cpu"))
    torch.testing.assert_close(boxes[:, 3], torch.full((8,), 10.0))
    torch.testing.assert_close(boxes[:, 2], torch.full((8,), 10 / 3))


def test_grayscale_solarize_and_single_channel_no_ops() -> None:
    x = images(4)
    mask = torch.tensor([True, False, True, False])
    gray = ops.to_grayscale_where(x, mask)
    torch.testing.assert_close(gray[0], TF.rgb_to_grayscale(x[0], num_output_channels=3))
    torch.testing.assert_close(gray[1], x[1])
    sol = ops.solarize_where(x, mask)
    torch.testing.assert_close(sol[2], TF.solarize(x[2], 0.5))
    torch.testing.assert_close(sol[3], x[3])
    one = images(3, 1)
    assert ops.adjust_saturation(one, torch.tensor([0.1, 1.0, 2.0])) is one
    assert ops.adjust_hue(one, torch.tensor([0.3, 0.0, -0.3])) is one
    assert ops.to_grayscale_where(one, torch.tensor([True, True, True])) is one


@st.composite
def crop_settings(draw: st.DrawFn) -> tuple[int, int, tuple[float, float], tuple[float, float]]:
    """An image size and `scale`, `ratio` ranges as the recipe's parameter types allow them."""
    height, width = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    s = sorted(draw(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=2)))
    r = sorted(draw(st.lists(st.floats(0.2, 5.0), min_size=2, max_size=2)))
    return height, width, (s[0], s[1]), (r[0], r[1])


@settings(max_examples=150, deadline=None)
@given(crop_settings(), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_any_crop_parameters_give_boxes_inside_the_image_within_the_ranges(
    setting: tuple[int, int, tuple[float, float], tuple[float, float]], n: int, seed: int
) -> None:
    """Every box lies in the image with its aspect ratio in `ratio`; a drawn box has its
    area fraction in `scale`, and a sample none of whose draws fits gets the fallback: the
    whole image cut to the closest allowed ratio (torchvision's rule)."""
    height, width, scale, ratio = setting
    boxes = ops.sample_crop_boxes(n, height, width, scale, ratio, torch.Generator().manual_seed(seed), torch.device("cpu"))
    assert boxes.shape == (n, 4) and boxes.dtype == torch.float32
    eps = 1e-4  # float32 rounding of sqrt, exp and the products; boxes are not rounded to pixels
    in_ratio = width / height
    fallback_w = width if in_ratio <= ratio[1] else height * ratio[1]
    fallback_h = height if in_ratio >= ratio[0] else width / ratio[0]
    for top, left, h, w in boxes.tolist():
        assert top >= 0 and left >= 0 and h > 0 and w > 0
        assert top + h <= height * (1 + eps) and left + w <= width * (1 + eps)
        assert ratio[0] * (1 - eps) <= w / h <= ratio[1] * (1 + eps)
        drawn = scale[0] * (1 - eps) <= h * w / (height * width) <= scale[1] * (1 + eps)
        fallback = math.isclose(w, fallback_w, rel_tol=eps) and math.isclose(h, fallback_h, rel_tol=eps)
        assert drawn or fallback, (top, left, h, w)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4), st.integers(1, 3), st.integers(2, 20), st.integers(2, 20), st.integers(1, 24),
    st.integers(0, 2**31 - 1),
)
def test_a_resized_crop_of_any_box_has_the_requested_size_and_mirrors_exactly(
    n: int, c: int, height: int, width: int, size: int, seed: int
) -> None:
    """(N, C, size, size) for any boxes inside the image; bilinear resampling keeps every
    value within the image's range, and the flipped crop is the crop mirrored."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, height, width, generator=g)
    boxes = ops.sample_crop_boxes(n, height, width, (0.05, 1.0), (0.5, 2.0), g, torch.device("cpu"))
    plain = ops.resized_crop(x, boxes, torch.zeros(n, dtype=torch.bool), size)
    flipped = ops.resized_crop(x, boxes, torch.ones(n, dtype=torch.bool), size)
    assert plain.shape == flipped.shape == (n, c, size, size)
    low, high = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert (plain.amin(dim=(1, 2, 3)) >= low - 1e-6).all() and (plain.amax(dim=(1, 2, 3)) <= high + 1e-6).all()
    torch.testing.assert_close(flipped, plain.flip(-1), atol=1e-5, rtol=0)


def test_normalize_matches_torchvision_per_channel() -> None:
    x = images(3, 3, 8)
    mean, std = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.25, 4.0])
    got = ops.normalize(x, mean, std)
    for i in range(3):
        torch.testing.assert_close(got[i], TF.normalize(x[i], mean.tolist(), std.tolist()), atol=1e-6, rtol=0)


def test_colour_adjustments_in_float64_match_torchvision_to_the_last_bits() -> None:
    """float64 images with the float32 factors the augmentation draws: every constant and
    factor is used in the images' dtype. Pixels with tied channels (r = g, g = b at the
    maximum) take the hue's tie-breaking branches."""
    x = images(6, 3, 8).double()
    x[:, :, 0, 0] = torch.tensor([1.0, 1.0, 0.2], dtype=torch.float64)  # r = g = max
    x[:, :, 0, 1] = torch.tensor([0.3, 0.9, 0.9], dtype=torch.float64)  # g = b = max
    x[:, :, 0, 2] = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)  # grey
    factors = torch.tensor([0.2, 0.5, 0.9, 1.0, 1.4, 1.8])
    shifts = torch.tensor([-0.5, -0.2, -0.01, 0.0, 0.15, 0.4])
    for ours, reference, params, atol in (
        (ops.adjust_contrast, TF.adjust_contrast, factors, 1e-12),
        (ops.adjust_saturation, TF.adjust_saturation, factors, 1e-12),
        (ops.adjust_hue, TF.adjust_hue, shifts, 1e-6),  # torchvision's float64 HSV round trip itself drifts by 5e-7
    ):
        got = ours(x, params)
        assert got.dtype == torch.float64
        for i in range(x.shape[0]):
            torch.testing.assert_close(got[i], reference(x[i], float(params[i])), atol=atol, rtol=0, msg=reference.__name__)
    torch.testing.assert_close(ops.adjust_hue(x, torch.zeros(6)), x, atol=1e-15, rtol=0)  # ours: exact
    grey = images(2, 1, 6)
    assert ops.adjust_saturation_(grey, torch.tensor([0.0, 2.0])) is grey


def test_resized_crop_in_float64_samples_in_float64() -> None:
    x = images(2, 3, 16)
    boxes = torch.tensor([[1.5, 2.25, 9.0, 11.0], [0.0, 0.0, 16.0, 16.0]])
    flip = torch.tensor([True, False])
    got = ops.resized_crop(x.double(), boxes.double(), flip, size=8)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.float(), ops.resized_crop(x, boxes, flip, size=8), atol=1e-6, rtol=0)


def plain_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                     generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop per sample, from the documented draws: (n, 10) area
    fractions, (n, 10) log ratios, then n tops and n lefts, each uniform in [0, 1)."""
    areas = torch.rand(n, 10, generator=generator)
    logs = torch.rand(n, 10, generator=generator)
    tops, lefts = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    rows = []
    for i in range(n):
        for k in range(10):
            target = height * width * (scale[0] + (scale[1] - scale[0]) * float(areas[i, k]))
            aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * float(logs[i, k]))
            w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
            if w <= width and h <= height:
                break
        else:
            if width / height < ratio[0]:
                w, h = width, width / ratio[0]
            elif width / height > ratio[1]:
                w, h = height * ratio[1], height
            else:
                w, h = width, height
        rows.append([(height - h) * float(tops[i]), (width - w) * float(lefts[i]), h, w])
    return torch.tensor(rows)


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), [
    (28, 36, (0.08, 1.0), (3 / 4, 4 / 3)), (10, 100, (0.5, 1.0), (3 / 4, 4 / 3)), (100, 10, (0.5, 1.0), (3 / 4, 4 / 3)),
    (12, 12, (0.9, 1.0), (0.5, 2.0)),
])
def test_crop_boxes_are_torchvisions_algorithm_on_the_generators_draws(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
) -> None:
    """The same float32 uniform numbers, turned into boxes in float32 by the batched code and
    in float64 one try at a time here."""
    got = ops.sample_crop_boxes(64, height, width, scale, ratio, torch.Generator().manual_seed(9), torch.device("cpu"))
    want = plain_crop_boxes(64, height, width, scale, ratio, torch.Generator().manual_seed(9))
    torch.testing.assert_close(got, want.float(), atol=1e-3, rtol=1e-4)
