"""The SimCLR augmentation: paper defaults, per-sample parameters in bounds, determinism."""

from __future__ import annotations

import os
import threading

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cmp.api.contracts import DataInfo
from cmp_plugins import image_ops as ops
from cmp_plugins.augmentations import (
    ViewPipeline,
    ViewSpec,
    _workers,
    blur_kernel,
    byol,
    chunk_workers,
    multicrop,
    sample_view_params,
    simclr,
)

RGB32 = DataInfo("t", 3, 32, 32, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
GRAY28 = DataInfo("t", 1, 28, 28, 10, (0.3,), (0.35,))


def uint8_images(n: int, info: DataInfo, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, info.channels, info.height, info.width), generator=g, dtype=torch.uint8)


def test_simclr_defaults_are_the_papers() -> None:
    spec = simclr(RGB32).specs[0]
    assert spec.crop_scale == (0.08, 1.0)
    assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.8, 0.8, 0.8, 0.2)
    assert spec.jitter_prob == 0.8 and spec.grayscale_prob == 0.2
    assert spec.blur_prob == 0.0  # small images: no blur, as for CIFAR in the paper
    big = DataInfo("t", 3, 96, 96, 10, (0.5,) * 3, (0.25,) * 3)
    assert simclr(big).specs[0].blur_prob == 0.5
    half = simclr(RGB32, jitter_strength=0.5).specs[0]
    assert (half.brightness, half.hue) == (0.4, 0.1)


def test_parameters_are_in_bounds_and_distinct_per_sample() -> None:
    spec = ViewSpec(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, jitter_prob=0.8, blur_prob=0.5)
    n = 2048
    p = sample_view_params(spec, n, 32, 32, torch.Generator().manual_seed(0), torch.device("cpu"))
    for name in ("brightness", "contrast", "saturation"):
        assert (p[name] >= 0.2).all() and (p[name] <= 1.8).all(), name
        assert p[name][p["jitter"]].unique().numel() == int(p["jitter"].sum()), name
        assert (p[name][~p["jitter"]] == 1).all(), name
    assert (p["hue"].abs() <= 0.2).all() and (p["hue"][~p["jitter"]] == 0).all()
    hue = p["hue"][p["jitter"]]  # uniform over [-0.2, 0.2]: both signs, near both ends
    assert hue.min() < -0.19 and hue.max() > 0.19 and hue.unique().numel() == hue.numel()
    applied = p["sigma"] > 0
    assert ((p["sigma"][applied] >= 0.1) & (p["sigma"][applied] <= 2.0)).all()
    assert p["sigma"][applied].min() < 0.2 and p["sigma"][applied].max() > 1.9  # over the whole range
    assert p["box"].unique(dim=0).shape[0] == n
    for key, prob in (("jitter", 0.8), ("grayscale", 0.2), ("flip", 0.5)):
        assert abs(p[key].float().mean().item() - prob) < 0.05, key


def test_views_differ_are_normalised_and_repeat_with_the_seed() -> None:
    aug = simclr(RGB32)
    x = uint8_images(64, RGB32)
    v1, v2 = aug(x, torch.Generator().manual_seed(3))
    assert v1.shape == v2.shape == (64, 3, 32, 32) and v1.dtype == torch.float32
    # each view is `apply` with its own draw of parameters, view 1's first, from the one generator
    g = torch.Generator().manual_seed(3)
    draws = [sample_view_params(spec, 64, 32, 32, g, torch.device("cpu")) for spec in aug.specs]
    for view, spec, p in zip((v1, v2), aug.specs, draws):
        torch.testing.assert_close(view, aug.apply_view(x.float() / 255, spec, p), atol=1e-6, rtol=0)
    assert not torch.equal(draws[0]["box"], draws[1]["box"])
    assert ((v1 - v2).flatten(1).abs().amax(dim=1) > 0.1).all()  # every image gets two different views
    again = aug(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again[0], v1)
    # normalised with the data's mean and std: undone, every view is an image in [0, 1]
    mean, std = torch.tensor(RGB32.mean).view(1, 3, 1, 1), torch.tensor(RGB32.std).view(1, 3, 1, 1)
    for view in (v1, v2):
        pixels = view * std + mean
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        assert pixels.min() < 0.05 and pixels.max() > 0.95  # the full range, not squeezed by wrong statistics


def test_preprocess_is_the_resized_input_normalised_with_the_datas_statistics() -> None:
    x = uint8_images(4, RGB32)
    aug = simclr(RGB32)
    mean, std = torch.tensor(RGB32.mean).view(1, 3, 1, 1), torch.tensor(RGB32.std).view(1, 3, 1, 1)
    torch.testing.assert_close(aug.preprocess(x), (x.float() / 255 - mean) / std, atol=1e-6, rtol=0)
    small = simclr(RGB32, size=16)
    want = torch.stack([
        TF.normalize(TF.resize(img.float() / 255, [16, 16], antialias=True), list(RGB32.mean), list(RGB32.std))
        for img in x
    ])
    torch.testing.assert_close(small.preprocess(x), want, atol=1e-5, rtol=0)


def test_single_channel_data_gets_single_channel_views() -> None:
    aug = simclr(GRAY28, size=24)
    views = aug(uint8_images(16, GRAY28), torch.Generator().manual_seed(0))
    assert [v.shape for v in views] == [(16, 1, 24, 24)] * 2
    assert aug.preprocess(uint8_images(4, GRAY28)).shape == (4, 1, 24, 24)


def test_no_randomness_gives_the_normalised_input() -> None:
    aug = simclr(
        RGB32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
        jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
    )
    x = uint8_images(8, RGB32)
    view = aug(x, torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(view, aug.preprocess(x), atol=1e-5, rtol=0)


def test_simclrs_views_are_the_papers_appendix_a_with_each_setting_its_own() -> None:
    big = DataInfo("t", 3, 64, 64, 10, (0.5,) * 3, (0.25,) * 3)  # 64 px: the paper blurs from here up
    (spec,) = set(simclr(big, jitter_strength=0.5, num_views=3).specs)
    assert (spec.brightness, spec.contrast, spec.saturation, spec.hue, spec.blur_prob) == (0.4, 0.4, 0.4, 0.1, 0.5)
    assert (spec.crop_scale, spec.crop_ratio, spec.blur_sigma, spec.solarize_prob) == ((0.08, 1.0), (3 / 4, 4 / 3), (0.1, 2.0), 0.0)
    assert simclr(big, size=63).specs[0].blur_prob == 0.0 and simclr(big, jitter_strength=3.0).specs[0].hue == 0.5
    given = simclr(big, jitter_strength=2.0, brightness=0.1, contrast=0.2, saturation=0.3, hue=0.05, blur_prob=0.25,
                   crop_ratio=(0.5, 2.0), blur_sigma=(0.5, 1.0), solarize_prob=0.2).specs[0]
    assert (given.brightness, given.contrast, given.saturation, given.hue, given.blur_prob) == (0.1, 0.2, 0.3, 0.05, 0.25)
    assert (given.crop_ratio, given.blur_sigma, given.solarize_prob) == ((0.5, 2.0), (0.5, 1.0), 0.2)


def test_byols_pair_is_the_papers_table_6() -> None:
    first, second = byol(RGB32).specs
    for spec in (first, second):
        assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.4, 0.4, 0.2, 0.1)
        assert (spec.crop_scale, spec.jitter_prob, spec.grayscale_prob) == ((0.08, 1.0), 0.8, 0.2)
    assert (first.blur_prob, first.solarize_prob, second.blur_prob, second.solarize_prob) == (1.0, 0.0, 0.1, 0.2)
    custom = byol(RGB32, size=24, crop_scale=(0.3, 1.0), jitter_prob=0.5, grayscale_prob=0.1,
                  blur_probs=(0.5, 0.0), solarize_probs=(0.1, 0.3))
    assert custom.size == 24 and custom.num_views == 2
    assert [(s.crop_scale, s.jitter_prob, s.grayscale_prob, s.blur_prob, s.solarize_prob) for s in custom.specs] == [
        ((0.3, 1.0), 0.5, 0.1, 0.5, 0.1), ((0.3, 1.0), 0.5, 0.1, 0.0, 0.3)]


def test_multicrops_views_are_swavs_with_simclrs_colour_distortion() -> None:
    big = DataInfo("t", 3, 70, 70, 10, (0.5,) * 3, (0.25,) * 3)
    aug = multicrop(big, global_views=3, local_views=2, global_scale=(0.3, 1.0), local_scale=(0.05, 0.2), jitter_strength=0.5,
                    jitter_prob=0.6, grayscale_prob=0.1)
    assert aug.num_views == 5 and aug.global_views == 3 and aug.size == 70
    assert [(s.size, s.crop_scale) for s in aug.specs] == [(None, (0.3, 1.0))] * 3 + [(30, (0.05, 0.2))] * 2  # 3/7 of 70
    for spec in aug.specs:
        assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.4, 0.4, 0.4, 0.1)
        assert (spec.jitter_prob, spec.grayscale_prob, spec.blur_prob) == (0.6, 0.1, 0.5)  # 70 px >= 64: blurred
    small = multicrop(DataInfo("t", 1, 14, 14, 10, (0.5,), (0.25,)), jitter_strength=3.0)
    assert [s.size for s in small.specs] == [None, None, 8, 8, 8, 8]  # 3/7 of 14 is 6, at least 8
    assert small.specs[0].hue == 0.5 and small.specs[0].blur_prob == 0.0
    assert multicrop(big, blur_prob=0.2, local_size=16).specs[-1].blur_prob == 0.2


def test_the_blur_kernel_is_a_tenth_of_the_side_odd_and_at_least_three() -> None:
    assert [blur_kernel(s) for s in (8, 28, 32, 64, 96, 224)] == [3, 3, 3, 7, 9, 23]


def test_a_blurred_view_uses_the_kernel_of_its_own_size() -> None:
    big = DataInfo("t", 3, 64, 64, 10, (0.5,) * 3, (0.25,) * 3)
    spec = ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0,
                    blur_prob=1.0, blur_sigma=(1.5, 1.5))
    pipeline = ViewPipeline(big, [spec], None)
    images = uint8_images(2, big)
    (view,) = pipeline(images, torch.Generator().manual_seed(0))
    blurred = ops.gaussian_blur(images.float() / 255, torch.full((2,), 1.5), kernel_size=7)
    torch.testing.assert_close(view, ops.normalize(blurred, pipeline.mean, pipeline.std), atol=1e-5, rtol=0)


def test_chunks_augmented_by_worker_threads_make_the_same_views_as_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import cmp_plugins.augmentations as augmentations

    images = uint8_images(10, RGB32)
    pipeline = simclr(RGB32)
    whole = pipeline(images, torch.Generator().manual_seed(3))  # 10 images: one chunk
    monkeypatch.setattr(augmentations, "CPU_CHUNK_VALUES", 4 * 3 * 32 * 32)  # chunks of 4 images
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pipeline(images, torch.Generator().manual_seed(3))
        torch.set_num_threads(2)
        two = pipeline(images, torch.Generator().manual_seed(3))
        assert torch.get_num_threads() == 2  # the workers' own single thread does not leak out
        assert (os.getpid(), 2) in augmentations._workers
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(one, two, whole):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-6, rtol=0)


def test_the_defaults_of_simclr_and_multicrop_are_the_papers() -> None:
    assert simclr(RGB32).specs[0].flip_prob == 0.5
    at_64 = multicrop(DataInfo("t", 3, 64, 64, 10, (0.5,) * 3, (0.25,) * 3))
    spec = at_64.specs[0]
    assert (spec.brightness, spec.hue, spec.jitter_prob, spec.grayscale_prob, spec.blur_prob) == (0.8, 0.2, 0.8, 0.2, 0.5)
    assert multicrop(RGB32, size=40).size == 40


def test_preprocess_resizes_only_what_is_not_already_square_at_the_size() -> None:
    pipeline = simclr(GRAY28)
    same = uint8_images(3, GRAY28)
    assert torch.equal(pipeline.preprocess(same), ops.normalize(same.float() / 255, pipeline.mean, pipeline.std))
    for height, width in ((28, 32), (32, 28)):
        wide = torch.randint(0, 256, (2, 1, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        resized = torch.nn.functional.interpolate(wide.float() / 255, size=(28, 28), mode="bilinear", antialias=True)
        torch.testing.assert_close(pipeline.preprocess(wide), ops.normalize(resized, pipeline.mean, pipeline.std), atol=1e-6, rtol=0)


def test_a_view_is_the_documented_chain_of_image_ops_on_its_drawn_parameters() -> None:
    """Crop and flip, brightness, contrast, saturation, hue, grayscale, blur, solarize, then
    normalise, in that order, each on the samples its parameters pick (an independent
    composition of the ops, from a generator in the same state)."""
    big = DataInfo("t", 3, 40, 40, 10, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    spec = ViewSpec(crop_scale=(0.3, 1.0), brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, jitter_prob=0.7,
                    grayscale_prob=0.3, blur_prob=0.5, blur_sigma=(0.5, 1.5), solarize_prob=0.4)
    images = uint8_images(16, big, seed=4)
    (view,) = ViewPipeline(big, [spec], 24)(images, torch.Generator().manual_seed(11))
    p = sample_view_params(spec, 16, 40, 40, torch.Generator().manual_seed(11), torch.device("cpu"))
    assert p["solarize"].any() and (~p["solarize"]).any() and p["grayscale"].any() and (p["sigma"] > 0).any()
    x = ops.resized_crop(images.float() / 255, p["box"], p["flip"], 24)
    x = ops.adjust_brightness(x, p["brightness"])
    x = ops.adjust_contrast(x, p["contrast"])
    x = ops.adjust_saturation(x, p["saturation"])
    x = ops.adjust_hue(x, p["hue"])
    x = ops.to_grayscale_where(x, p["grayscale"])
    x = ops.gaussian_blur(x, p["sigma"], blur_kernel(24))
    x = ops.solarize_where(x, p["solarize"])
    torch.testing.assert_close(view, ops.normalize(x, torch.tensor(big.mean), torch.tensor(big.std)), atol=1e-5, rtol=0)


def test_chunks_are_a_batch_on_an_accelerator_and_about_a_million_values_on_the_cpu() -> None:
    import cmp_plugins.augmentations as augmentations

    assert augmentations.chunk_size(torch.empty(7, 3, 8, 8, device="meta")) == 7  # not the CPU: the whole batch
    assert augmentations.chunk_size(torch.empty(0, 3, 8, 8)) == 1
    assert augmentations.chunk_size(torch.empty(5, 3, 32, 32)) == (1 << 20) // (3 * 32 * 32)
    assert augmentations.chunk_size(torch.empty(2, 3, 1024, 1024)) == 1  # one image larger than a chunk
    assert augmentations.chunk_size(torch.empty(1, 1, 28, 28)) == (1 << 20) // (28 * 28)


def test_the_normalisation_constants_stay_out_of_checkpoints() -> None:
    """They come from the data set, not from training: a state dict without them loads into
    any pipeline (and old checkpoints stay loadable)."""
    pipeline = simclr(RGB32)
    assert dict(pipeline.named_buffers()).keys() == {"mean", "std"} and pipeline.state_dict() == {}


@pytest.mark.parametrize("threads", [1, 3])
def test_chunk_workers_are_as_many_as_asked_each_on_one_core(threads: int) -> None:
    before = torch.get_num_threads()
    _workers.pop((os.getpid(), threads), None)  # a pool made by this test, whatever ran before
    existing = {t.ident for t in threading.enumerate()}
    pool = chunk_workers(threads)
    assert chunk_workers(threads) is pool  # made once per process

    def meet(barrier: threading.Barrier) -> tuple[int, str]:
        barrier.wait()
        return torch.get_num_threads(), threading.current_thread().name

    together = threading.Barrier(threads, timeout=10)  # passes only if `threads` tasks run at once
    done = [f.result(timeout=30) for f in [pool.submit(meet, together) for _ in range(threads)]]
    assert {count for count, _ in done} == {1} and all(name.startswith("cmp-augment") for _, name in done)
    one_more = threading.Barrier(threads + 1, timeout=1)  # cannot pass: there is no worker for the last task
    futures = [pool.submit(meet, one_more) for _ in range(threads + 1)]
    with pytest.raises(threading.BrokenBarrierError):
        futures[0].result(timeout=30)
    for future in futures:
        future.exception(timeout=30)
    # A pool with room for more threads would have started one for a task that found the
    # others busy; its initializer would wait forever at the start-up barrier and hang the
    # interpreter's exit.
    assert len({t.ident for t in threading.enumerate()} - existing) == threads
    torch.set_num_threads(before)
