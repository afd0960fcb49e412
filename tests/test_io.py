"""Reading images through OpenCV: every kind of bad input gives a one-line error naming the file and the problem;
good inputs of every flavour (gray, RGBA, 16-bit) come back as uint8 RGB or gray."""

import os

import cv2
import numpy as np
import pytest

from visionkit.io import ImageError, expand_sources, read_image, video_frames, write_image


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    paths = {}
    paths["rgb"] = str(tmp_path / "rgb.png")
    cv2.imwrite(paths["rgb"], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    paths["jpg"] = str(tmp_path / "photo.jpg")
    cv2.imwrite(paths["jpg"], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    paths["gray"] = str(tmp_path / "gray.png")
    cv2.imwrite(paths["gray"], rgb[:, :, 0])
    rgba = np.dstack([rgb, np.full((20, 30), 0, np.uint8)])
    paths["rgba"] = str(tmp_path / "rgba.png")
    cv2.imwrite(paths["rgba"], rgba)
    paths["16bit"] = str(tmp_path / "deep.png")
    cv2.imwrite(paths["16bit"], (rgb[:, :, 0].astype(np.uint16) * 257))
    paths["empty"] = str(tmp_path / "empty.jpg")
    open(paths["empty"], "wb").close()
    paths["text"] = str(tmp_path / "notes.jpg")
    with open(paths["text"], "w") as f:
        f.write("not an image at all\n")
    data = open(paths["jpg"], "rb").read()
    paths["truncated"] = str(tmp_path / "cut.jpg")
    with open(paths["truncated"], "wb") as f:
        f.write(data[: len(data) // 2])
    return rgb, paths


def test_good_images_come_back_as_uint8_rgb(images):
    rgb, p = images
    np.testing.assert_array_equal(read_image(p["rgb"]), rgb)
    assert read_image(p["jpg"]).shape == (20, 30, 3)
    g = read_image(p["gray"])
    assert g.shape == (20, 30, 3) and np.array_equal(g[:, :, 0], g[:, :, 2])
    assert read_image(p["gray"], channels=1).shape == (20, 30, 1)
    assert np.all(read_image(p["rgba"]) == 255)  # fully transparent over white
    np.testing.assert_array_equal(read_image(p["16bit"], channels=1)[:, :, 0], rgb[:, :, 0])


@pytest.mark.parametrize("kind,problem", [("empty", "empty file"), ("text", "not an image"),
                                          ("truncated", "truncated JPEG")])
def test_bad_files_name_the_file_and_the_problem(images, kind, problem):
    _, p = images
    with pytest.raises(ImageError) as e:
        read_image(p[kind])
    msg = str(e.value)
    assert msg.startswith(p[kind] + ": ") and problem in msg and "\n" not in msg


def test_missing_and_too_large(images, tmp_path):
    _, p = images
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="larger than the 100-pixel limit"):
        read_image(p["rgb"], max_pixels=100)
    with pytest.raises(ImageError, match="larger than"):
        read_image(p["jpg"], max_pixels=100)


def test_expand_sources_keeps_going_past_bad_ones(images, tmp_path):
    _, p = images
    (tmp_path / "sub").mkdir()
    items, errors = expand_sources([p["rgb"], str(tmp_path), str(tmp_path / "*.png"), str(tmp_path / "missing.jpg"),
                                    str(tmp_path / "sub"), str(tmp_path / "*.xyz")])
    names = [os.path.basename(i[0]) for i in items]
    assert names[0] == "rgb.png" and "photo.jpg" in names and all(k == "image" for _, k in items)
    assert [e.problem for e in errors] == ["no such file or directory", "directory holds no images or videos",
                                           "pattern matches no files"]


def test_video_frames_every_nth(tmp_path):
    path = str(tmp_path / "clip.avi")
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    if not out.isOpened():
        pytest.skip("this OpenCV build writes no MJPG video")
    for i in range(7):
        out.write(np.full((24, 32, 3), i * 30, np.uint8))
    out.release()
    frames = list(video_frames(path, every=3))
    assert [i for i, _ in frames] == [0, 3, 6] and frames[0][1].shape == (24, 32, 3)
    assert expand_sources([path])[0] == [(path, "video")]


def test_write_image_is_atomic_and_round_trips(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = write_image(tmp_path / "out" / "a.png", img)
    np.testing.assert_array_equal(read_image(path), img)
    assert [f for f in os.listdir(tmp_path / "out")] == ["a.png"]  # no temp file left behind
