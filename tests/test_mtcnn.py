"""MTCNN: the PReLU layer it needs, model bundles (several models in one file), the shipped converted weights, and
the face-detection cascade against facenet-pytorch's own ``detect_face`` on the same weights.

The torch comparisons skip when torch or facenet-pytorch's data files are missing (install facenet-pytorch with
``--no-deps``: its __init__ imports torchvision, which these tests stand in for with a small stub module, so its
package is never imported as a whole). The photo tests use scikit-image's sample images and skip without it.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

import visionkit as vk
from visionkit import layers as L
from visionkit.bundle import ModelBundle
from visionkit.detectors import mtcnn
from visionkit.detectors.facenet_reference import find_facenet, reference_mtcnn
from visionkit.layers.prelu import PReLU
from visionkit.ops.prelu import prelu, prelu_backward
from visionkit.tasks.nms import box_iou
from visionkit.weights import inspect_model_file, load_model, save_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(7)


# ----------------------------------------------------------------------------------------------- PReLU


def _prelu_ref(x, a):
    a = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, a * x)


@pytest.mark.parametrize("shape,shared", [((2, 3, 5, 4), False), ((2, 3, 5, 4), True), ((4, 6), False)])
def test_prelu_op_forward_and_backward(shape, shared):
    x = RNG.standard_normal(shape).astype(np.float32)
    a = RNG.standard_normal(1 if shared else shape[1]).astype(np.float32)
    np.testing.assert_allclose(prelu(x, a), _prelu_ref(x, a), rtol=1e-6, atol=1e-7)
    gy = RNG.standard_normal(shape).astype(np.float32)
    gx, ga = prelu_backward(gy, x, a)
    slope = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    np.testing.assert_allclose(gx, np.where(x > 0, gy, slope * gy), rtol=1e-6, atol=1e-7)
    axes = tuple(i for i in range(x.ndim) if shared or i != 1)
    want = np.where(x > 0, 0, gy * x).sum(axis=axes, dtype=np.float64).reshape(a.shape)
    np.testing.assert_allclose(ga, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        prelu(x, np.ones(shape[1] + 1, np.float32))


def test_prelu_layer_in_a_model_trains_and_roundtrips(tmp_path):
    inp = vk.Input((3, 6, 6))
    x = PReLU(name="act")(L.Conv2D(4, 3, name="conv")(inp))
    model = vk.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)), seed=0)
    model.get_layer("act").alpha.value = np.array([0.1, -0.2, 0.3, 0.25], np.float32)
    xb = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = model(xb)
    model.backward(np.ones_like(y))
    alpha = model.get_layer("act").alpha
    # finite difference of sum(y) w.r.t. one slope
    k, eps = 1, 1e-2
    base = alpha.value.copy()
    alpha.value = base + np.eye(4, dtype=np.float32)[k] * eps
    up = model.predict(xb).sum()
    alpha.value = base - np.eye(4, dtype=np.float32)[k] * eps
    down = model.predict(xb).sum()
    alpha.value = base
    assert abs((up - down) / (2 * eps) - alpha.grad[k]) < 1e-2 * max(1.0, abs(alpha.grad[k]))
    model.save(tmp_path / "p.vk")
    back = vk.load_model(tmp_path / "p.vk")
    np.testing.assert_array_equal(back.predict(xb), model.predict(xb))


def test_prelu_cuda_twin_matches_cpu():
    cuda = pytest.importorskip("numba.cuda")
    from visionkit.backends.cpu import prelu as C
    from visionkit.backends.cuda import prelu as G

    x = RNG.standard_normal((1, 2, 1, 3)).astype(np.float32)  # the simulator is slow: tiny shapes
    gy = RNG.standard_normal(x.shape).astype(np.float32)
    for a in (RNG.standard_normal(2).astype(np.float32), np.array([0.3], np.float32)):
        dx, dgy, da = cuda.to_device(x), cuda.to_device(gy), cuda.to_device(a)
        np.testing.assert_allclose(G.prelu_forward(dx, da).copy_to_host(), C.prelu_forward(x, a), rtol=1e-6)
        gx, ga = G.prelu_backward(dgy, dx, da)
        cgx, cga = C.prelu_backward(gy, x, a)
        np.testing.assert_allclose(gx.copy_to_host(), cgx, rtol=1e-6)
        np.testing.assert_allclose(ga.copy_to_host(), cga, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- bundles


def _tiny(name, seed):
    inp = vk.Input((2, 5, 5))
    x = PReLU(name="act")(L.Conv2D(3, 3, name="conv")(inp))
    return vk.Model(inp, [L.Dense(2, name="fc")(L.Flatten(name="flat")(x)), x], name=name, seed=seed)


def test_bundle_roundtrip(tmp_path):
    a, b = _tiny("first", 0), _tiny("second", 1)
    b.metadata = {"role": "refiner"}
    path = tmp_path / "pair.vk"
    save_bundle({"a": a, "b": b}, path, metadata={"task": "detect", "classes": ("x",)})
    assert sorted(os.listdir(tmp_path)) == ["pair.vk"]  # no temporary left behind

    header, shapes = inspect_model_file(path)
    assert header["kind"] == "bundle" and list(header["members"]) == ["a", "b"]
    assert "a:conv/kernel" in shapes and shapes["b:fc/kernel"] == (2, 27)

    bundle = load_model(path)
    assert isinstance(bundle, ModelBundle) and bundle.name == "pair"
    assert list(bundle) == ["a", "b"] and len(bundle) == 2 and "a" in bundle and list(bundle.members) == ["a", "b"]
    assert bundle.metadata == {"task": "detect", "classes": ["x"]}
    assert bundle["b"].metadata == {"role": "refiner"} and bundle["a"].name == "first"
    assert bundle.count_params() == a.count_params() + b.count_params() == sum(p.size for p in bundle.parameters())
    x = RNG.standard_normal((3, 2, 5, 5)).astype(np.float32)
    for k, m in (("a", a), ("b", b)):
        for got, want in zip(bundle[k].predict(x), m.predict(x)):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(KeyError, match="has no member 'c'"):
        bundle["c"]
    assert bundle.to("cpu") is bundle and bundle.device == "cpu"

    lines = []
    tables = bundle.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert set(tables) == {"a", "b"} and 'Member "a"' in text and 'Member "b"' in text and "PReLU" in text

    # a ModelBundle saves itself again, keeping name and metadata
    bundle.save(tmp_path / "again.vk")
    again = load_model(tmp_path / "again.vk")
    assert again.name == "pair" and again.metadata == bundle.metadata

    # the registry's parameter count reads the bundle's header
    from visionkit.registry import ModelSpec

    spec = ModelSpec.from_register("t", "pair", str(path), architecture="x", task="detect")
    assert spec.count_params() == bundle.count_params()

    with pytest.raises(ValueError, match="bundle of models"):
        _tiny("other", 2).load_weights(path)
    with pytest.raises(ValueError, match="member name"):
        save_bundle({"a:b": a}, tmp_path / "bad.vk")


def _bundle_file(path, members, tensors, **extra):
    header = {"format": "visionkit", "format_version": 2, "kind": "bundle", "members": members, "metadata": {}}
    header.update(extra)
    save_file(tensors, str(path), metadata={"visionkit": json.dumps(header)})


def test_corrupt_bundles_are_refused_naming_the_file(tmp_path):
    good = _tiny("m", 0)
    spec = {"class_name": "Model", "config": good.get_config()}
    tensors = {f"m:{p.name}": np.asarray(p.value) for p in good.parameters()}

    bad = tmp_path / "badconfig.vk"
    _bundle_file(bad, {"m": {"class_name": "Model", "config": {"layers": "nonsense", "nodes": 3}}}, tensors)
    with pytest.raises(ValueError, match=r"badconfig\.vk.*member 'm'.*cannot rebuild"):
        load_model(bad)

    unknown = tmp_path / "unknownclass.vk"
    _bundle_file(unknown, {"m": {"class_name": "Wibble", "config": {}}}, tensors)
    with pytest.raises(ValueError, match=r"unknownclass\.vk.*Wibble"):
        load_model(unknown)

    nomembers = tmp_path / "nomembers.vk"
    _bundle_file(nomembers, "pnet", tensors)
    with pytest.raises(ValueError, match=r"nomembers\.vk.*corrupt visionkit bundle"):
        load_model(nomembers)

    stray = tmp_path / "stray.vk"
    _bundle_file(stray, {"m": spec}, dict(tensors, **{"ghost:fc/kernel": np.zeros(2, np.float32)}))
    with pytest.raises(ValueError, match=r"stray\.vk.*'ghost:fc/kernel'.*none of its members"):
        load_model(stray)

    shape = tmp_path / "shape.vk"
    t2 = dict(tensors)
    t2["m:fc/kernel"] = np.zeros((2, 5), np.float32)
    _bundle_file(shape, {"m": spec}, t2)
    with pytest.raises(ValueError, match=r"shape\.vk.*member 'm'.*'fc'.*\(2, 27\).*\(2, 5\)"):
        load_model(shape)

    ok = tmp_path / "ok.vk"
    _bundle_file(ok, {"m": spec}, tensors)
    assert isinstance(load_model(ok), ModelBundle)


# ----------------------------------------------------------------------------------------------- the shipped model


def test_shipped_bundle():
    path = mtcnn.default_model_path()
    assert os.path.isfile(path) and 1_500_000 < os.path.getsize(path) < 3_000_000
    assert os.path.isfile(os.path.join(os.path.dirname(path), "LICENSE-mtcnn.txt"))
    bundle = mtcnn.load_default()
    assert list(bundle) == ["pnet", "rnet", "onet"]
    assert [bundle[k].count_params() for k in bundle] == [6_632, 100_178, 389_040]  # facenet-pytorch's counts
    md = bundle.metadata
    assert md["task"] == "detect" and md["detector"] == "mtcnn" and md["class_names"] == ["face"]
    assert "facenet-pytorch 2.6.0" in md["source"] and md["license"].startswith("MIT")
    assert md["preprocessing"]["mean"] == [127.5] * 3 and md["preprocessing"]["std"] == [128.0] * 3

    from visionkit import registry

    spec = registry.models().get("mtcnn")
    if spec is None:
        pytest.skip("the built-in 'pretrained' plugin is not installed (pip install -e .)")
    assert spec.weights_available and spec.task == "detect" and spec.count_params() == 495_850


# ----------------------------------------------------------------------------------------------- torch references


def _facenet_dir():
    root, why = find_facenet()
    if root is None:
        pytest.skip(why)
    return root


def _converter():
    spec = importlib.util.spec_from_file_location("convert_mtcnn", os.path.join(ROOT, "scripts", "convert_mtcnn.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def facenet():
    """facenet-pytorch's MTCNN module (PNet, RNet, ONet, detect_face), loaded with a stand-in for torchvision
    (visionkit/detectors/facenet_reference.py)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("PIL")  # detect_face.py imports PIL.Image
    with reference_mtcnn(torch, _facenet_dir()) as nets:
        yield nets


@pytest.fixture(scope="module")
def bundle():
    return mtcnn.load_default()


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_converted_nets_match_torch(net, bundle, facenet):
    """The shipped weights against facenet's own nn.Modules and against the converter's functional forward."""
    torch = facenet.torch
    size = {"pnet": (3, 45, 61), "rnet": (3, 24, 24), "onet": (3, 48, 48)}[net]
    x = np.random.default_rng(3).uniform(-1, 1, (5,) + size).astype(np.float32)
    ours = bundle[net].predict(x)
    with torch.no_grad():
        ref = [t.numpy() for t in getattr(facenet, net)(torch.from_numpy(x))]
    conv = _converter()
    states = conv.load_state_dicts(os.path.join(facenet.root, "data"))
    functional = conv.torch_forward(net, states[net], x)
    for a, b, c in zip(ours, ref, functional):
        assert a.shape == b.shape == c.shape
        assert np.abs(a - b).max() < 1e-4
        assert np.abs(a - c).max() < 1e-4


# ----------------------------------------------------------------------------------------------- detection


def _photo(name):
    data = pytest.importorskip("skimage.data")
    return getattr(data, name)()


def _as_arrays(faces):
    boxes = np.array([[f.x1, f.y1, f.x2, f.y2, f.score] for f in faces], np.float64).reshape(-1, 5)
    marks = np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2)
    return boxes, marks


def test_astronaut_face(bundle):
    img = _photo("astronaut")
    faces = mtcnn.detect_faces(bundle, img)
    assert len(faces) == 1
    f = faces[0]
    assert f.name == "face" and f.class_id == 0 and f.score > 0.99 and len(f.landmarks) == 5
    # Eileen Collins' face: about (181, 62) - (268, 172) in the 512x512 photo
    assert box_iou([f.x1, f.y1, f.x2, f.y2], [181, 62, 268, 172])[0, 0] > 0.9
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = f.landmarks
    assert lx < nx < rx and max(ly, ry) < ny < min(mly, mry) and mlx < mrx  # eyes, nose, mouth in order
    assert all(f.x1 <= px <= f.x2 and f.y1 <= py <= f.y2 for px, py in f.landmarks)


@pytest.mark.parametrize("name", ["astronaut", "tiles"])
def test_detect_faces_matches_facenet(name, bundle, facenet):
    """Same count, IoU >= 0.9 pairwise and landmarks within 1 px of facenet-pytorch's detect_face on the same
    weights (a tiling of twelve small astronauts exercises the pyramid, the NMS steps and crops at the edges)."""
    img = _photo("astronaut")
    if name == "tiles":
        from visionkit.io import resize

        img = np.tile(resize(img, 128, 128), (3, 4, 1))
    ours, our_marks = _as_arrays(mtcnn.detect_faces(bundle, img))
    with facenet.torch.no_grad():
        ref, ref_marks = facenet.detect_face(img, 20, facenet.pnet, facenet.rnet, facenet.onet, [0.6, 0.7, 0.7],
                                             0.709, "cpu")
    ref = np.asarray(ref[0], np.float64).reshape(-1, 5)
    ref_marks = np.asarray(ref_marks[0], np.float64).reshape(-1, 5, 2)
    assert len(ours) == len(ref) >= 1
    iou = box_iou(ours[:, :4], ref[:, :4])
    match = iou.argmax(axis=1)
    assert sorted(match) == list(range(len(ref)))
    assert iou[np.arange(len(ours)), match].min() >= 0.9
    assert np.abs(our_marks - ref_marks[match]).max() < 1.0
    assert np.abs(ours[:, 4] - ref[match, 4]).max() < 1e-3


def test_no_faces_in_face_free_images(bundle):
    yy, xx = np.mgrid[0:240, 0:320]
    texture = np.stack([(xx * 3 + yy) % 256, (np.sin(xx / 7.0) * np.cos(yy / 5.0) * 127 + 128), (yy * 2) % 256], -1)
    assert mtcnn.detect_faces(bundle, texture.astype(np.uint8)) == []
    assert mtcnn.detect_faces(bundle, np.zeros((100, 150, 3), np.uint8)) == []
    assert mtcnn.detect_faces(bundle, np.zeros((10, 10, 3), np.uint8)) == []  # smaller than one P-Net window
    assert mtcnn.detect_faces(bundle, _photo("coffee")) == []


def test_detect_faces_inputs(bundle):
    img = _photo("astronaut")
    gray = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    assert len(mtcnn.detect_faces(bundle, gray)) == 1
    with pytest.raises(ValueError, match="H x W x 3"):
        mtcnn.detect_faces(bundle, np.zeros((4, 5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="three values"):
        mtcnn.detect_faces(bundle, img, thresholds=(0.5, 0.5))
    assert len(mtcnn.detect_faces(bundle, img, min_size=300)) == 0  # the face is ~90 px: too small for min_size


def test_pyramid_and_min_nms():
    scales = mtcnn.pyramid_scales(512, 400, min_size=20, factor=0.709)
    assert scales[0] == pytest.approx(0.6) and all(b == pytest.approx(a * 0.709) for a, b in zip(scales, scales[1:]))
    assert 400 * scales[-1] >= 12 > 400 * scales[-1] * 0.709
    assert mtcnn.pyramid_scales(11, 500, min_size=12) == []
    # a small box inside a big one: IoU is low, overlap over the smaller box is 1 -> "Min" removes it
    boxes = np.array([[0, 0, 99, 99], [10, 10, 29, 29], [200, 200, 219, 219]], np.float32)
    keep = mtcnn.nms_min(boxes, np.array([0.9, 0.95, 0.5], np.float32), 0.7)
    assert keep.tolist() == [1, 2]
