"""rlebench: capture-and-replay microbenchmarks for RF-DETR segmentation post-processing (COCO RLE)."""

__version__ = "0.1.0"
