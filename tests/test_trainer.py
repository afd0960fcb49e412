"""The training loop: a small run converges, a run interrupted and resumed ends with bitwise the same weights as
one never interrupted (dropout, BatchNorm, augmentation and a schedule included), early stopping, the files it
writes (best model with its card, checkpoint, history)."""

import json

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L
from visionkit.data import ArrayDataset, Augment, split
from visionkit.train.trainer import Trainer, ends_in_softmax


def stripes(n=240, seed=0):
    """Class 0: horizontal stripes, class 1: vertical, class 2: a blob; with noise, 12x12 gray."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 12, 12, 1)).astype(np.int32)
    for i, c in enumerate(labels):
        off = rng.integers(0, 3)
        if c == 0:
            images[i, off::3, :, 0] += 180
        elif c == 1:
            images[i, :, off::3, 0] += 180
        else:
            images[i, 3 + off:8 + off, 3:8, 0] += 180
    return ArrayDataset(images.clip(0, 255).astype(np.uint8), labels, class_names=["horizontal", "vertical", "blob"])


def small_cnn(seed=0):
    return vk.Sequential([
        L.Conv2D(6, 3, activation="relu", input_shape=(1, 12, 12)), L.BatchNormalization(), L.MaxPool2D(2),
        L.Flatten(), L.Dropout(0.3), L.Dense(3, activation="softmax"),
    ], seed=seed)


def weights(model):
    return [p.value.copy() for p in model.parameters()]


def test_a_small_run_converges_and_writes_its_files(tmp_path):
    train, val = split(stripes(), [0.75, 0.25], seed=0, stratify=True)
    model = small_cnn()
    assert ends_in_softmax(model)
    trainer = Trainer(model, lr=3e-3, seed=0, progress=False)
    history = trainer.fit(train, val, epochs=6, batch_size=16, out=str(tmp_path / "stripes.vk"))
    rows = history.rows
    assert len(rows) == 6 and rows[-1]["train_loss"] < rows[0]["train_loss"] * 0.5
    assert rows[-1]["val_accuracy"] >= 0.9
    best = vk.load_model(tmp_path / "stripes.vk")
    card = best.metadata
    assert card["class_names"] == ["horizontal", "vertical", "blob"] and card["task"] == "classify"
    assert card["preprocessing"]["channels"] == 1
    assert card["training"]["best_epoch"] == trainer.best["epoch"] and card["training"]["optimizer"] == "adam"
    csv_lines = (tmp_path / "stripes.history.csv").read_text().splitlines()
    assert len(csv_lines) == 7 and csv_lines[0].startswith("epoch,train_loss,train_accuracy")
    assert len(json.loads((tmp_path / "stripes.history.json").read_text())) == 6
    assert (tmp_path / "stripes.last.vk").exists()
    # the best model file scores on the validation set what the trainer recorded for its epoch
    ev = Trainer(best, progress=False).evaluate(val)
    assert ev["accuracy"] == pytest.approx(rows[trainer.best["epoch"] - 1]["val_accuracy"])


def test_an_interrupted_run_resumed_ends_bitwise_equal(tmp_path):
    train, val = split(stripes(seed=1), [0.75, 0.25], seed=0)
    kwargs = dict(batch_size=16, augment=Augment("flip,shift"))

    whole = Trainer(small_cnn(), optimizer="sgd", lr=0.05, schedule="step:1:0.5", seed=3, progress=False)
    whole.fit(train, val, epochs=3, out=str(tmp_path / "a.vk"), **kwargs)

    first = Trainer(small_cnn(), optimizer="sgd", lr=0.05, schedule="step:1:0.5", seed=3, progress=False)
    first.fit(train, val, epochs=1, out=str(tmp_path / "b.vk"), **kwargs)   # ... and the process stops here
    vk.reset_names()
    resumed = Trainer.from_checkpoint(str(tmp_path / "b.last.vk"), progress=False)
    assert resumed.epoch == 1 and resumed.optimizer.lr == pytest.approx(0.025)
    resumed.fit(train, val, epochs=3, out=str(tmp_path / "b.vk"), **kwargs)

    for a, b in zip(weights(whole.model), weights(resumed.model)):
        np.testing.assert_array_equal(a, b)
    assert [r["train_loss"] for r in whole.history.rows] == [r["train_loss"] for r in resumed.history.rows]


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    train, val = split(stripes(), [0.75, 0.25], seed=0)
    frozen = vk.Sequential([L.Flatten(input_shape=(1, 12, 12)), L.Dense(3)], seed=0)
    trainer = Trainer(frozen, optimizer="sgd", lr=0.0, seed=0, progress=False)  # nothing can improve
    trainer.fit(train, val, epochs=10, batch_size=32, patience=2, monitor="val_loss")
    assert trainer.stopped_early and trainer.epoch == 3 and trainer.best["epoch"] == 1


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_diverging_run_stops_with_a_clear_error():
    train = stripes(48)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        Trainer(small_cnn(), optimizer="sgd", lr=1e30, progress=False).fit(train, epochs=2, batch_size=16)


def _image_folder(root, dataset):
    import cv2

    for i, (img, label) in enumerate(zip(dataset.images, dataset.labels)):
        folder = root / dataset.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    return root


def test_cli_train_writes_a_model_that_records_how_it_was_made(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from visionkit.cli import cli

    _image_folder(tmp_path / "stripes", stripes(150))
    monkeypatch.chdir(tmp_path)
    args = ["train", "cifar10-small", "--data", f"image-folder:{tmp_path / 'stripes'}", "--epochs", "2",
            "--batch-size", "16", "--augment", "flip", "--out", "stripes.vk", "--seed", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.stderr and "saved to stripes.vk" in result.stderr
    card = vk.load_model("stripes.vk").metadata
    training = card["training"]
    assert training["command"].startswith("visionkit ") and training["data"].startswith("image-folder:")
    assert training["seed"] == 1 and training["epochs"] == 2 and training["augment"] == "flip=0.5"  # with its strength
    assert training["seconds"] > 0 and "evaluation" not in card  # an image folder has no test split
    assert card["class_names"] == ["blob", "horizontal", "vertical"]  # the folders, sorted

    more = CliRunner().invoke(cli, args[:4] + ["--epochs", "3", "--resume", "stripes.last.vk", "--out",
                                               "stripes.vk"])
    assert more.exit_code == 0, more.output
    assert "epoch 3/3" in more.stderr and "epoch 1/3" not in more.stderr
    bad = CliRunner().invoke(cli, ["train", "cifar10-small", "--data", "imagefolder:x"])
    assert bad.exit_code == 2 and "image-folder" in bad.stderr


def test_cli_eval_prints_the_report_and_saves_the_confusion_matrix(tmp_path, monkeypatch):
    import cv2
    from click.testing import CliRunner

    from visionkit.cli import cli

    data = stripes(90)
    _image_folder(tmp_path / "stripes", data)
    monkeypatch.chdir(tmp_path)
    model = small_cnn()
    Trainer(model, lr=3e-3, progress=False).fit(data, epochs=4, batch_size=16, out="s.vk")
    # the folder reader gives every image at 3 channels: a gray model takes them through its card
    result = CliRunner().invoke(cli, ["eval", "s.vk", "--data", f"image-folder:{tmp_path / 'stripes'}",
                                      "--split", "train", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cm = np.array(doc["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 90 and doc["accuracy"] == pytest.approx(np.trace(cm) / 90)
    assert {"horizontal", "vertical", "blob", "macro avg"} <= set(doc)   # per-class precision / recall / f1
    assert doc["vertical"]["support"] == 30
    assert cv2.imread(doc["confusion_matrix_image"]) is not None
    text = CliRunner().invoke(cli, ["eval", "s.vk", "--data", f"image-folder:{tmp_path / 'stripes'}",
                                    "--split", "train"])
    assert "accuracy" in text.stdout and "confusion matrix (rows: true class" in text.stdout
    missing = CliRunner().invoke(cli, ["eval", "s.vk", "--data", f"image-folder:{tmp_path / 'stripes'}"])
    assert missing.exit_code == 2 and "no 'test' split" in missing.stderr


def test_segmentation_masks_train_with_the_pixel_loss(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (64, 16, 16, 1)).astype(np.uint8)
    masks = np.zeros((64, 16, 16), np.int64)
    for i in range(64):
        y, x = rng.integers(0, 10, 2)
        images[i, y:y + 6, x:x + 6] = 220
        masks[i, y:y + 6, x:x + 6] = 1
    masks[:, 0, :] = 255  # an ignored row: neither trained on nor scored
    data = ArrayDataset(images, masks, class_names=["background", "square"])
    model = vk.Sequential([L.Conv2D(8, 3, padding="same", activation="relu", input_shape=(1, 16, 16)),
                           L.Conv2D(2, 1)], seed=0)
    trainer = Trainer(model, lr=1e-2, seed=0, progress=False)
    trainer.fit(data, epochs=5, batch_size=16, out=str(tmp_path / "seg.vk"))
    assert type(trainer.loss).__name__ == "PixelCrossEntropy"
    assert trainer.history.rows[-1]["train_accuracy"] > 0.97   # pixel accuracy over the unignored pixels
    assert vk.load_model(tmp_path / "seg.vk").metadata["task"] == "segment"
    with pytest.raises(ValueError, match="moves pixels"):
        Trainer(model, progress=False).fit(data, epochs=1, augment=Augment("flip"))
    # evaluate streams masks batch by batch: the same loss and pixel accuracy as the whole set scored at once
    ev = trainer.evaluate(data, batch_size=24)
    logits = model.predict(images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    assert ev["loss"] == pytest.approx(trainer.loss(logits, masks), rel=1e-6)  # (x / 255 here, x * (1 / 255) there)
    keep = masks != 255
    assert ev["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1)[keep] == masks[keep]), rel=1e-12)
    assert ev["scores"] is None and ev["pred"].shape == (64, 16, 16) and ev["pred"].dtype == np.uint8


def test_labels_with_box_targets_train_a_two_headed_window_detector(tmp_path):
    """Windows of a bright square whose box is (centre 0.5, 0.5, sqrt(w) = sqrt(h) = 0.75) or background: the
    class head learns which, the box head the box of the positive windows only."""
    rng = np.random.default_rng(1)
    n = 96
    labels = np.arange(n) % 2   # 0 square, 1 background
    images = rng.integers(0, 50, (n, 8, 8, 1)).astype(np.uint8)
    images[labels == 0, 2:6, 2:6] = 230
    targets = np.where(labels[:, None] == 0, [0.5, 0.5, 0.75, 0.75], 0.0).astype(np.float32)
    data = ArrayDataset(images, labels, class_names=["square", "background"])
    data.targets = targets
    x = vk.Input((1, 8, 8))
    f = L.Dense(16, activation="relu")(L.Flatten()(x))
    model = vk.Model(x, [L.Dense(2, name="cls")(f), L.Dense(4, name="box")(f)], seed=0)
    trainer = Trainer(model, lr=1e-2, seed=0, progress=False)
    trainer.fit(data, epochs=30, batch_size=32, out=str(tmp_path / "det.vk"))
    assert type(trainer.loss).__name__ == "WindowDetectionLoss" and trainer.loss.background == 1
    ev = trainer.evaluate(data)
    assert ev["accuracy"] == 1.0
    boxes = ev["scores"][1][labels == 0]
    np.testing.assert_allclose(boxes.mean(axis=0), [0.5, 0.5, 0.75, 0.75], atol=0.05)
    card = vk.load_model(tmp_path / "det.vk").metadata
    assert card["task"] == "detect" and card["background_class"] == 1
