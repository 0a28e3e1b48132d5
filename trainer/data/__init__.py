"""Image-text data for pretraining ablations: the built-in `shapes` benchmark, COCO /
Flickr30k (Karpathy splits), a plain image folder, and the WordPiece tokenizer.

Typical use::

    bench = load_benchmark(cfg.data)
    ids, mask = bench.tokenize(bench.train.captions)          # once, kept in memory
    images = bench.train.load_images(bench.train.caption_image[idx])   # per batch
"""

from trainer.data.benchmark import load_benchmark, load_splits
from trainer.data.labels import labels_from_histograms, patch_histograms, patch_labels
from trainer.data.scenes import COLOURS, SHAPES, SIZES
from trainer.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from trainer.data.types import Benchmark, ImageTextSplit

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZES",
    "SPECIAL_TOKENS",
    "Benchmark",
    "ImageTextSplit",
    "load_benchmark",
    "load_splits",
    "load_tokenizer",
    "labels_from_histograms",
    "patch_histograms",
    "patch_labels",
    "train_tokenizer",
]
