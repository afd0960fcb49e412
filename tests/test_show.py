"""visionkit.visualize (filter and feature-map grids) and the `visionkit show` commands."""

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import visionkit as vk
from visionkit import layers as L
from visionkit import visualize as viz
from visionkit.commands.show import show

EDGE = np.array([[-1, 0, 1]] * 3, np.float32)  # a vertical-edge detector: dark left, bright right


def _tiny(bn=False):
    """3x8x8 input -> conv_a (4 filters 3x3, relu, same) -> conv_b (2 filters, 4 channels) -> fc (Dense 3)."""
    inp = vk.Input((3, 8, 8), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    x = L.Conv2D(2, 3, name="conv_b")(x)
    if bn:
        x = L.BatchNorm(name="bn_b")(x)
        x = L.Activation("relu", name="relu_b")(x)
    out = L.Dense(3, name="fc")(L.Flatten(name="flat")(x))
    model = vk.Model(inp, out, name="tiny", seed=0)
    a, b = model.get_layer("conv_a"), model.get_layer("conv_b")
    ka = np.zeros((4, 3, 3, 3), np.float32)
    ka[0, :] = EDGE                 # filter 0: vertical edge on all three colours
    ka[1, 0, 1, 1] = 1.0            # filter 1: the red pixel under the centre
    ka[2] = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 3, 3))
    ka[3, 2] = -0.5                 # filter 3: minus blue
    a.kernel.value = ka
    a.bias.value = np.array([0.1, -0.2, 0.0, 0.3], np.float32)
    kb = np.random.default_rng(2).uniform(-0.3, 0.3, (2, 4, 3, 3)).astype(np.float32)
    kb[0, 0] = EDGE
    b.kernel.value = kb
    return model


CARD = {"preprocessing": {"input_size": [8, 8], "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _tile(grid, k, cols, t, pad=1):
    r, c = divmod(k, cols)
    y, x = pad + r * (t + pad), pad + c * (t + pad)
    return grid[y:y + t, x:x + t]


# ---- filters ------------------------------------------------------------------------------------------------
def test_rgb_first_layer_tiles():
    model = _tiny()
    grid = viz.filter_grid(model.get_layer("conv_a"), tile=30, pad=1)
    t = 30  # 3x3 kernels enlarged x10, nearest neighbour
    assert grid.dtype == np.uint8 and grid.shape == (1 + 2 * (t + 1), 1 + 2 * (t + 1), 3)  # 4 tiles, 2 x 2
    edge = _tile(grid, 0, 2, t)
    # layer range is max|w| = 1: -1 -> 0, 0 -> 128, +1 -> 255 in every colour; each kernel weight a 10x10 block
    assert (edge[:, :10] == 0).all() and (edge[:, 10:20] == 128).all() and (edge[:, 20:] == 255).all()
    red = _tile(grid, 1, 2, t)
    assert tuple(red[15, 15]) == (255, 128, 128) and tuple(red[0, 0]) == (128, 128, 128)
    minus_blue = _tile(grid, 3, 2, t)
    assert tuple(minus_blue[5, 5]) == (128, 128, 64)
    assert tuple(grid[0, 0]) == viz.GAP_COLOR  # the gap around tiles


def test_grey_tiles_filters_by_channels_and_mean():
    model = _tiny()
    layer = model.get_layer("conv_b")  # 2 filters x 4 input channels = 8 tiles, rows = filters
    grid = viz.filter_grid(layer, tile=9, pad=2, normalize="tile")
    t = 9
    assert grid.shape == (2 + 2 * (t + 2), 2 + 4 * (t + 2), 3)
    edge = _tile(grid, 0, 4, t, pad=2)  # filter 0, channel 0
    assert (edge[:, :3] == 0).all() and (edge[:, 3:6] == 128).all() and (edge[:, 6:] == 255).all()
    assert (edge[..., 0] == edge[..., 1]).all() and (edge[..., 1] == edge[..., 2]).all()  # grey
    # forced grey on the RGB layer: filters x channels too
    assert viz.filter_grid(model.get_layer("conv_a"), as_rgb=False, tile=3, pad=0).shape == (12, 9, 3)
    # too many (filter, channel) pairs: one tile per filter, the mean over input channels
    k = np.zeros((10, 10, 3, 3), np.float32)
    k[4] = EDGE
    grid = viz.filter_grid(k, tile=33, max_tiles=64)
    assert grid.shape == (1 + 3 * 34, 1 + 4 * 34, 3)  # 10 tiles in 4 columns, 3x3 enlarged x11
    edge = _tile(grid, 4, 4, 33)
    assert (edge[:, :11] == 0).all() and (edge[:, 11:22] == 128).all() and (edge[:, 22:] == 255).all()
    # at most max_tiles tiles; a caption band on top with a label
    assert viz.filter_grid(np.ones((100, 1, 3, 3)), tile=3, pad=0, max_tiles=16).shape == (12, 12, 3)
    captioned = viz.filter_grid(layer, label="conv_b")
    assert captioned.shape[0] == viz.filter_grid(layer).shape[0] + viz.caption_height()


def test_layer_lookup_errors():
    model = _tiny()
    with pytest.raises(viz.UnknownLayerError) as e:
        viz.find_layer(model, "conv_c")
    assert "conv_a" in e.value.matches and e.value.conv_layers == ["conv_a", "conv_b"]
    with pytest.raises(viz.NotConvolutionError, match="Dense"):
        viz.find_layer(model, "fc")
    assert viz.find_layer(model).name == "conv_a"


# ---- activations --------------------------------------------------------------------------------------------
def test_activation_maps_pre_post_and_reference():
    model = _tiny()
    model.metadata = CARD
    img = _image()
    acts = viz.activation_maps(model, img)
    pre, post = acts
    assert acts.layer == "conv_a" and acts.activation == "relu"
    assert pre.shape == post.shape == (4, 8, 8) and pre.dtype == np.float32
    np.testing.assert_allclose(post, np.maximum(pre, 0), atol=1e-6)
    assert (pre < 0).any() and (pre > 0).any()
    x = (img.astype(np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(acts.input, x.transpose(2, 0, 1), atol=1e-5)
    # one pixel against a plain-numpy cross-correlation (padding "same": one zero pixel each side)
    w, b = model.get_layer("conv_a").kernel.value, model.get_layer("conv_a").bias.value
    xp = np.pad(x.transpose(2, 0, 1), ((0, 0), (1, 1), (1, 1)))
    for f, i, j in [(0, 3, 4), (2, 0, 7), (3, 5, 0)]:
        ref = float((xp[:, i:i + 3, j:j + 3] * w[f]).sum() + b[f])
        assert pre[f, i, j] == pytest.approx(ref, abs=1e-4)
    # the model's own output is unchanged (no layer was modified) and post is what the layer produces
    sub = vk.Model(model.inputs[0], model.get_layer("conv_a")._nodes[0].outputs[0], name="check")
    np.testing.assert_allclose(sub.predict(acts.input[None])[0], post, atol=1e-6)


def test_activation_maps_follow_batchnorm_and_activation_layer():
    model = _tiny(bn=True)
    model.metadata = CARD
    acts = viz.activation_maps(model, _image(1), layer="conv_b")
    pre, post = acts
    assert acts.activation == "relu" and acts.activation_layer == "relu_b" and acts.pre_layer == "bn_b"
    assert pre.shape == (2, 6, 6)
    np.testing.assert_allclose(post, np.maximum(pre, 0), atol=1e-6)
    # a layer without activation and none after it: pre and post are its output
    plain = viz.activation_maps(_tiny(), _image(1), layer="conv_b")
    assert plain.activation is None
    np.testing.assert_array_equal(plain.pre, plain.post)


def test_activation_grid_caption_and_limits():
    maps = np.random.default_rng(0).normal(size=(100, 6, 6)).astype(np.float32)
    grid = viz.activation_grid(maps, max_maps=64, pad=1)
    t = 48  # 6x6 enlarged x8
    assert grid.shape == (1 + 8 * (t + 1), 1 + 8 * (t + 1), 3)
    tile = _tile(grid, 0, 8, t)
    assert (tile[:8, :8] == tile[0, 0]).all()  # nearest-neighbour blocks
    captioned = viz.activation_grid(maps, "conv_a pre-activation", max_maps=16)
    assert captioned.shape[0] == viz.activation_grid(maps, max_maps=16).shape[0] + viz.caption_height()
    relu = np.maximum(maps, 0)
    g = viz.activation_grid(relu[:1], tile=6, pad=0)  # all >= 0: black = 0, white = the maximum
    assert g.min() == 0 and g.max() == 255


# ---- the command line ---------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    path = tmp_path / "tiny.vk"
    _tiny().save(path, metadata=CARD)
    img = tmp_path / "photo.png"
    cv2.imwrite(str(img), _image(3))
    return path, img


def test_cli_filters_writes_png(files, tmp_path, monkeypatch):
    model, _ = files
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(show, ["filters", str(model)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "show" / "tiny_conv_a_filters.png"
    assert res.output.strip().splitlines()[-1] == "runs/show/tiny_conv_a_filters.png"
    png = cv2.imread(str(out))
    assert png is not None and png.ndim == 3 and png.shape[0] > viz.caption_height()
    res = CliRunner().invoke(show, ["filters", str(model), "--layer", "conv_b", "--out", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(tmp_path / "b.png")) is not None


def test_cli_activations_writes_png(files, tmp_path):
    model, img = files
    out = tmp_path / "sub" / "acts.png"
    res = CliRunner().invoke(show, ["activations", str(model), str(img), "--out", str(out), "--max-maps", "2"])
    assert res.exit_code == 0, res.output
    assert str(out) in res.output
    png = cv2.imread(str(out))
    assert png is not None and png.shape[0] > 2 * viz.caption_height()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp")]  # written atomically


def test_cli_unknown_layer_lists_close_matches(files):
    model, img = files
    res = CliRunner().invoke(show, ["filters", str(model), "--layer", "conv_c"])
    assert res.exit_code == 2
    assert "did you mean" in res.output and "conv_a" in res.output
    assert "convolution layers: conv_a, conv_b" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(show, ["activations", str(model), str(img), "--layer", "cnv_b"])
    assert res.exit_code == 2 and "conv_b" in res.output


def test_cli_non_conv_layer_and_bad_inputs(files, tmp_path):
    model, _ = files
    res = CliRunner().invoke(show, ["filters", str(model), "--layer", "fc"])
    assert res.exit_code == 2 and "'fc' is a Dense, not a convolution" in res.output
    res = CliRunner().invoke(show, ["filters", "no-such-model"])
    assert res.exit_code == 2 and "neither a model file" in res.output
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    res = CliRunner().invoke(show, ["activations", str(model), str(bad)])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "bad.png" in res.output


def test_cli_architecture_random_weights(tmp_path):
    res = CliRunner().invoke(show, ["filters", "lenet5", "--out", str(tmp_path / "l.png")])
    assert res.exit_code == 0, res.output
    assert "random weights (architecture without training)" in res.output
    assert cv2.imread(str(tmp_path / "l.png")) is not None
