"""Post-processing implementations and the COCO RLE codec: pure compute, no file or network I/O.

Public API: the contract types (`PostprocessInputs`, `PreprocessMeta`, `ImageDetections`, `RleMask`),
`postprocess_reference`, the codec (`encode_mask`, `decode_mask`) and the registry
(`get_implementation`, `available_implementations`). See docs/API.md.
"""

from kernels.contract import ImageDetections, PostprocessInputs, PreprocessMeta, RleMask
from kernels.reference import postprocess_reference
from kernels.registry import available_implementations, get_implementation
from kernels.rle import decode as decode_mask
from kernels.rle import encode as encode_mask

__all__ = [
    "ImageDetections",
    "PostprocessInputs",
    "PreprocessMeta",
    "RleMask",
    "available_implementations",
    "decode_mask",
    "encode_mask",
    "get_implementation",
    "postprocess_reference",
]
