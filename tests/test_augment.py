"""visionkit.data.augment: every operation deterministic for a seed, exact where it should be, the math checked."""

import numpy as np
import pytest

from visionkit.data.augment import (
    AUGMENTATIONS,
    Augment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    affine_matrix,
    hflip,
    pad_crop,
    parse_augment,
    translate,
    vflip,
    warp_affine,
)


@pytest.fixture
def batch():
    return np.random.default_rng(0).integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_is_deterministic_for_a_seed(name, batch):
    aug = Augment(name)
    a = aug(batch, np.random.default_rng(42))
    b = aug(batch, np.random.default_rng(42))
    c = aug(batch, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == batch.shape
    assert not np.array_equal(a, c)  # a different seed draws differently
    gray = aug(batch[..., :1], np.random.default_rng(42))  # one-channel images work too
    assert gray.shape == batch[..., :1].shape
    floats = aug(batch.astype(np.float32) / 255, np.random.default_rng(42))
    assert floats.dtype == np.float32


def test_augment_leaves_the_input_alone(batch):
    before = batch.copy()
    Augment("crop,flip,vflip,rotate,brightness,noise")(batch, 0)
    np.testing.assert_array_equal(batch, before)


def test_flips_are_exact(batch):
    np.testing.assert_array_equal(hflip(batch), batch[:, :, ::-1])
    np.testing.assert_array_equal(vflip(batch), batch[:, ::-1])
    np.testing.assert_array_equal(hflip(batch[0]), batch[0][:, ::-1])
    out = Augment("flip", flip=1.0)(batch, 0)
    np.testing.assert_array_equal(out, batch[:, :, ::-1])
    out = Augment("vflip=1")(batch, 0)
    np.testing.assert_array_equal(out, batch[:, ::-1])
    np.testing.assert_array_equal(Augment("flip=0")(batch, 0), batch)
    mixed = Augment("flip")(batch, np.random.default_rng(3))
    for img, src in zip(mixed, batch):
        assert np.array_equal(img, src) or np.array_equal(img, src[:, ::-1])


@pytest.mark.parametrize("fill", ["zero", "edge"])
def test_shift_by_known_pixels_is_exact(batch, fill):
    img = batch[0]
    out = translate(img, 3, -2, fill)  # 3 right, 2 up
    np.testing.assert_array_equal(out[:-2, 3:], img[2:, :-3])
    if fill == "zero":
        assert not out[:, :3].any() and not out[-2:].any()
    else:
        np.testing.assert_array_equal(out[:-2, :3], np.repeat(img[2:, :1], 3, axis=1))
        np.testing.assert_array_equal(out[-2:, 3:], np.repeat(img[-1:, :-3], 2, axis=0))
    gray = translate(img[:, :, :1], -1, 1)
    assert gray.shape == (10, 12, 1)
    np.testing.assert_array_equal(gray[1:, :-1], img[:-1, 1:, :1])
    # the Augment draws whole-pixel moves: every output is the input moved by some (dx, dy) within the limit
    out = Augment("shift=2")(batch, np.random.default_rng(9))
    for o, src in zip(out, batch):
        assert any(np.array_equal(o, translate(src, dx, dy)) for dx in range(-2, 3) for dy in range(-2, 3))


def test_random_crop_shapes_and_content(batch):
    out = Augment("crop=4")(batch, np.random.default_rng(1))
    assert out.shape == batch.shape
    padded = np.pad(batch, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for o, p in zip(out, padded):  # each output is some window of the zero-padded image
        assert any(np.array_equal(o, p[t:t + 10, l:l + 12]) for t in range(9) for l in range(9))
    small = Augment("crop=0", crop_size=(6, 8))(batch, 1)
    assert small.shape == (6, 6, 8, 3)
    square = Augment("crop", crop=2, crop_size=7)(batch, 1)
    assert square.shape == (6, 7, 7, 3)
    np.testing.assert_array_equal(pad_crop(batch, [1] * 6, [2] * 6, (3, 4), 0), batch[:, 1:4, 2:6])
    with pytest.raises(ValueError, match="does not fit"):
        Augment("crop=0", crop_size=(20, 20))(batch, 0)


def test_rotation_and_scale_geometry():
    img = np.zeros((1, 9, 9, 1), np.uint8)
    img[0, 4, 6] = 255  # a dot right of the centre
    rot = Augment("rotate=90")  # angles drawn in [-90, 90]; check the exact extreme through the matrix helper
    up = warp_affine(img[0], affine_matrix((9, 9), 90.0))  # counter-clockwise: the dot moves above the centre
    assert up[2, 4, 0] == 255 and up.sum() == 255
    zoom = warp_affine(img[0], affine_matrix((9, 9), 0.0, 2.0))
    assert zoom[4, 8, 0] == 255
    assert rot(img, 0).shape == img.shape


def test_brightness_and_contrast_math_against_numpy(batch):
    x = batch.astype(np.float32)
    f = np.array([0.5, 1.0, 1.5, 0.8, 1.2, 0.0], np.float32)
    np.testing.assert_allclose(adjust_brightness(x, f), x * f[:, None, None, None], rtol=1e-6)
    gray_mean = (x @ np.array([0.299, 0.587, 0.114], np.float32)).reshape(6, -1).mean(axis=1)
    m = gray_mean[:, None, None, None]
    np.testing.assert_allclose(adjust_contrast(x, f), (x - m) * f[:, None, None, None] + m, rtol=1e-5, atol=1e-3)
    # through Augment: the drawn factors are uniform in [1 - 0.3, 1 + 0.3] per image, in draw order
    rng_draw = np.random.default_rng(5)
    factors = rng_draw.uniform(0.7, 1.3, 6)
    expected = np.clip(np.rint(x * factors[:, None, None, None].astype(np.float32)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(Augment("brightness=0.3")(batch, np.random.default_rng(5)), expected)
    g = x @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(adjust_saturation(x, f), g[..., None] + (x - g[..., None]) * f[:, None, None, None],
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(adjust_saturation(x, np.zeros(6))[..., 0], g, rtol=1e-5, atol=1e-3)


def test_hue_rotation_keeps_gray_pixels_gray(batch):
    x = batch.astype(np.float32)
    x[:, :5] = x[:, :5, :, :1]  # top half gray (R = G = B)
    out = adjust_hue(x, np.full(6, 0.3))
    np.testing.assert_allclose(out[:, :5], x[:, :5], atol=1e-3)
    assert np.abs(out[:, 5:] - x[:, 5:]).max() > 20  # colours did change
    np.testing.assert_allclose(adjust_hue(x, np.zeros(6)), x, atol=1e-3)
    np.testing.assert_allclose(adjust_hue(x, np.ones(6)), x, atol=1e-2)  # a full turn
    pure_red = np.zeros((1, 1, 1, 3), np.float32)
    pure_red[..., 0] = 255
    np.testing.assert_allclose(adjust_hue(pure_red, [1 / 3])[0, 0, 0], [0, 255, 0], atol=1e-2)  # red -> green
    u8 = batch.copy()
    u8[:, :5] = u8[:, :5, :, :1]
    out8 = Augment("hue=0.5")(u8, 0)
    assert np.array_equal(out8[:, :5], u8[:, :5])


def test_noise_statistics():
    flat = np.full((4, 32, 32, 3), 128, np.uint8)
    out = Augment("noise=0.1")(flat, 0).astype(np.float32) - 128
    assert abs(out.mean()) < 1.0 and 24 < out.std() < 27  # 0.1 * 255 = 25.5


def test_parser_names_order_and_errors():
    assert parse_augment("flip, shift=0.2,,hflip") == {"flip": None, "shift": 0.2}
    aug = Augment("noise,flip,crop")
    assert aug.ops == ["crop", "flip", "noise"]  # applied in the documented order, whatever the string's
    assert str(Augment("flip,rotate=10")) == "flip=0.5,rotate=10"
    cfg = Augment("crop,flip", crop_size=8).to_config()
    assert cfg == {"ops": ["crop", "flip"], "crop": 4, "flip": 0.5, "fill": "zero", "crop_size": [8, 8]}
    assert Augment(cfg.pop("ops"), **cfg).to_config() == Augment("crop,flip", crop_size=8).to_config()
    with pytest.raises(ValueError) as e:
        Augment("flip,flp,sheer")
    msg = str(e.value)
    assert "unknown augmentation 'flp'" in msg and "did you mean flip" in msg
    for name in AUGMENTATIONS:
        assert name in msg
    with pytest.raises(ValueError, match="valid: crop, flip"):
        Augment("sheer")
    with pytest.raises(ValueError, match="not a number"):
        Augment("rotate=much")
    with pytest.raises(ValueError, match="probability"):
        Augment("flip=2")
    with pytest.raises(ValueError, match="'rotate' is not among the augmentations"):
        Augment("flip", rotate=10)
    with pytest.raises(ValueError, match="unknown augmentation parameter 'fil'"):
        Augment("flip", fil="edge")
    with pytest.raises(ValueError, match="fill must be one of"):
        Augment("shift", fill="wrap")
    assert not Augment("") and not Augment(None)
    np.testing.assert_array_equal(Augment("")(np.ones((1, 2, 2, 1), np.uint8), 0), np.ones((1, 2, 2, 1)))
