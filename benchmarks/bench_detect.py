"""Detection, end to end on one image, visionkit against its peers in the same run:

- faces on a 1200x630 photo (scikit-image's astronaut and cameraman side by side): visionkit's MTCNN
  (``visionkit.detectors.mtcnn.detect_faces``, the shipped weights) against the reference MTCNN (facenet-pytorch's
  ``detect_face`` on torch, same weights) and OpenCV's Haar cascade (``haarcascade_frontalface_default.xml``,
  scaleFactor 1.1, minNeighbors 5, minSize 20): milliseconds per image and faces found;
- the textbooks' sliding-window detector on a 320x240 image with ``keras-mnist-cnn`` (random weights, seed 0,
  28x28 windows): the fully convolutional pass (``SlidingWindowDetector(model).level(image, 1.0)``) against
  classifying every window on its own (each window cut at the FCN's stride, all of them batched through
  ``model.predict``), the scores compared and the speed-up measured: the textbook's claim that the FCN is much
  faster because overlapping windows share their convolutions.

Run with the OpenBLAS variables unset for every engine, in one command (DESIGN.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_detect.py
Timings are reported (pytest-benchmark's table, conftest's closing table, and this file's own section after it,
which also shows the faces each engine found and the ratios), never asserted. Asserted: visionkit's MTCNN finds
the faces the reference finds (same count, IoU >= 0.9), and the sliding-window scores of the two paths agree as
closely as keras-mnist-cnn's "same" padding allows (see ``test_sliding_per_window``). With ``--benchmark-disable`` every case still runs
once (the checks run; nothing is timed).

OpenCV 5 moved the Haar cascades (``cv2.CascadeClassifier``) out of the main package into opencv_contrib, which
is why pyproject.toml asks for ``opencv-python-headless<5`` (an OpenCV 4 wheel ships the cascade and its XML);
with an OpenCV 5 installed anyway the Haar case skips, naming that fix.
The reference MTCNN needs torch and facenet-pytorch (``pip install --no-deps facenet-pytorch``); its package
imports torchvision, which ``visionkit.detectors.facenet_reference`` stands in for, as in tests/test_mtcnn.py.
"""

import os
import types

import numpy as np
import pytest
from _harness import RESULTS, THREADS, median_time, record, run_benchmark

from visionkit.builtins.architectures import ARCHITECTURES
from visionkit.detectors import mtcnn
from visionkit.detectors.facenet_reference import find_facenet, reference_mtcnn
from visionkit.tasks.nms import box_iou
from visionkit.tasks.scores import to_probabilities
from visionkit.tasks.sliding import SlidingWindowDetector

FACES = "faces, 1200x630 photo"
SLIDING = "sliding window 28x28 on 320x240, keras-mnist-cnn"
PHOTO_SIZE = (630, 1200)  # H, W
SCENE_SIZE = (240, 320)
DETAILS = {}  # case -> engine -> text for the closing section (faces found, score differences)


def _timing_on(config):
    return not bool(config.getoption("benchmark_disable", False))


# ---- the closing section -----------------------------------------------------------------------------------------


class _DetectSummary:
    """A pytest plugin registered by this module: after conftest's table, every engine of each case with its
    time, its ratio to visionkit and what it found."""

    def pytest_terminal_summary(self, terminalreporter):
        cases = [c for c in (FACES, SLIDING) if c in RESULTS or c in DETAILS]
        if not cases:
            return
        tr = terminalreporter
        tr.section("detection (medians of this run; ratio = engine time / visionkit time)")
        tr.write_line(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE') or '(unset)'}  threads={THREADS}")
        for case in cases:
            times, details = RESULTS.get(case, {}), DETAILS.get(case, {})
            base = times.get("visionkit")
            tr.write_line(case)
            for engine in list(dict.fromkeys([e for e in times if e != "work"] + list(details))):
                t = times.get(engine)
                cols = [f"  {engine:28s}"]
                cols.append(f"{t * 1e3:10.2f} ms" if t is not None else f"{'(not timed)':>13s}")
                cols.append(f"x{t / base:7.2f}" if t is not None and base and engine != "visionkit" else " " * 8)
                if engine in details:
                    cols.append(details[engine])
                tr.write_line("  ".join(cols))
            if case == SLIDING and base and "per-window" in times:
                tr.write_line(f"  speed-up of the fully convolutional pass: x{times['per-window'] / base:.1f}")


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("bench_detect_summary"):
        pm.register(_DetectSummary(), "bench_detect_summary")


# ---- the face photo ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo():
    """1200x630 RGB: the astronaut (Eileen Collins) and the cameraman, each resized to 600x600, side by side on a
    grey canvas (15 px above and below). Deterministic: skimage's bundled photos and OpenCV's area resize."""
    data = pytest.importorskip("skimage.data")
    from visionkit.io import resize

    h, w = PHOTO_SIZE
    canvas = np.full((h, w, 3), 128, np.uint8)
    side = w // 2
    top = (h - side) // 2
    canvas[top:top + side, :side] = resize(data.astronaut(), side, side)
    canvas[top:top + side, side:] = resize(data.camera(), side, side)[..., None]
    return canvas


@pytest.fixture(scope="module")
def bundle():
    return mtcnn.load_default()


def _faces_text(boxes):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    sizes = ", ".join(f"{round(b[2] - b[0])}x{round(b[3] - b[1])} at ({int(b[0])}, {int(b[1])})"
                      for b in boxes)
    return f"{len(boxes)} face{'s' if len(boxes) != 1 else ''}" + (f": {sizes}" if len(boxes) else "")


def _ours(bundle, photo):
    faces = mtcnn.detect_faces(bundle, photo)
    return np.array([[f.x1, f.y1, f.x2, f.y2] for f in faces], np.float64).reshape(-1, 4)


def test_faces_visionkit(benchmark, bundle, photo):
    DETAILS.setdefault(FACES, {})["visionkit"] = "visionkit's MTCNN, " + _faces_text(_ours(bundle, photo))
    run_benchmark(benchmark, FACES, "visionkit", lambda: mtcnn.detect_faces(bundle, photo))


# the reference MTCNN: facenet-pytorch's module, loaded with a stand-in for torchvision
# (visionkit/detectors/facenet_reference.py, which tests/test_mtcnn.py uses too)


@pytest.fixture(scope="module")
def facenet():
    torch = pytest.importorskip("torch")
    pytest.importorskip("PIL")  # facenet's detect_face module imports PIL.Image
    root, why = find_facenet()
    if root is None:
        pytest.skip(why)
    torch.set_num_threads(THREADS)
    with reference_mtcnn(torch, root) as nets:
        yield nets


def test_faces_reference_mtcnn(request, facenet, bundle, photo):
    torch = facenet.torch

    def run():
        with torch.no_grad():
            return facenet.detect_face(photo, 20, facenet.pnet, facenet.rnet, facenet.onet, [0.6, 0.7, 0.7],
                                       0.709, "cpu")

    boxes, _ = run()
    ref = np.asarray(boxes[0], np.float64).reshape(-1, 5)[:, :4]
    ours = _ours(bundle, photo)
    DETAILS.setdefault(FACES, {})["torch"] = "facenet-pytorch's MTCNN, " + _faces_text(ref)
    assert len(ours) == len(ref) >= 1
    iou = box_iou(ours, ref)
    assert iou.max(axis=1).min() >= 0.9 and sorted(iou.argmax(axis=1)) == list(range(len(ref)))
    if _timing_on(request.config):
        record(FACES, "torch", median_time(run, repeat=5, min_time=0.5))  # "torch": conftest's table shows it


def test_faces_opencv_haar(request, photo):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 moved them to opencv_contrib); "
                    f"an OpenCV 4 wheel has them: pip install 'opencv-python-headless<5'")
    path = os.path.join(getattr(cv2.data, "haarcascades", ""), "haarcascade_frontalface_default.xml")
    if not os.path.isfile(path):
        pytest.skip(f"no {path}")
    cascade = cv2.CascadeClassifier(path)
    assert not cascade.empty()
    cv2.setNumThreads(THREADS)

    def run():  # the grey conversion is part of the detector's work (MTCNN takes the RGB image)
        gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
        return cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))

    found = np.asarray(run(), np.float64).reshape(-1, 4)
    found[:, 2:] += found[:, :2]  # x, y, w, h -> corners
    DETAILS.setdefault(FACES, {})[f"OpenCV {cv2.__version__} Haar"] = "frontal face cascade, " + _faces_text(found)
    if _timing_on(request.config):
        record(FACES, f"OpenCV {cv2.__version__} Haar", median_time(run, repeat=5, min_time=0.5))


# ---- the sliding-window detector ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sliding():
    """keras-mnist-cnn (random weights, seed 0; its card says 28x28 windows), its SlidingWindowDetector, and a
    320x240 scene (the cameraman, resized)."""
    data = pytest.importorskip("skimage.data")
    from visionkit.io import resize

    model = ARCHITECTURES["keras-mnist-cnn"].builder(seed=0)
    model.metadata["preprocessing"] = {"input_size": [28, 28], "channels": 1}
    detector = SlidingWindowDetector(model)
    scene = resize(data.camera(), *SCENE_SIZE)
    return types.SimpleNamespace(model=model, detector=detector, image=scene)


def _per_window(s, batch_size=256):
    """Every window the FCN scores, cut from the image at the FCN's stride and classified on its own."""
    (wh, ww), (th, tw) = s.detector.window, s.detector.stride
    x = s.detector.pre.to_array(s.image)  # (1, H, W), the same preprocessing the FCN path applies
    views = np.lib.stride_tricks.sliding_window_view(x, (wh, ww), axis=(1, 2))[:, ::th, ::tw]  # (C, r, c, wh, ww)
    c, rows, cols = views.shape[:3]
    crops = np.ascontiguousarray(views.transpose(1, 2, 0, 3, 4).reshape(rows * cols, c, wh, ww))
    scores = s.model.predict(crops, batch_size=batch_size)
    return to_probabilities(scores).reshape(rows, cols, -1)


def test_sliding_fcn(benchmark, sliding):
    lv = sliding.detector.level(sliding.image, 1.0)
    rows, cols = lv.probs.shape[:2]
    DETAILS.setdefault(SLIDING, {})["visionkit"] = (
        f"fully convolutional: one pass, {rows}x{cols} = {rows * cols} windows, stride {sliding.detector.stride[0]}")
    run_benchmark(benchmark, SLIDING, "visionkit", lambda: sliding.detector.level(sliding.image, 1.0))


def test_sliding_per_window(benchmark, sliding):
    """Every window classified on its own, and its scores against the FCN's.

    They are not bit-equal, by design of keras-mnist-cnn: its convolutions pad "same", so a window classified
    alone sees zeros beyond its edges where the fully convolutional pass sees the neighbouring pixels (the
    conversion is exact for "valid" convolutions; tests/test_fcn.py asserts that to 1e-5). The difference is
    reported (max and mean over all windows and classes, and how often the top class is the same); asserted
    only that it stays at the size padding explains (probabilities within 0.05)."""
    fcn = sliding.detector.level(sliding.image, 1.0).probs
    win = _per_window(sliding)
    assert win.shape == fcn.shape
    diff = np.abs(win - fcn)
    assert diff.max() < 0.05
    agree = float((win.argmax(-1) == fcn.argmax(-1)).mean())
    DETAILS.setdefault(SLIDING, {})["per-window"] = (
        f"{win.shape[0] * win.shape[1]} windows through model.predict (batches of 256); vs the FCN: max |p diff| "
        f"{diff.max():.2e}, mean {diff.mean():.2e}, same top class {100 * agree:.1f}%")
    run_benchmark(benchmark, SLIDING, "per-window", lambda: _per_window(sliding))
