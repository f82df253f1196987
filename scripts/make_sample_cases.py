"""Generate the small sample case sets shipped in cases/samples/ (deterministic; synthetic, not captured).

Inputs come from kernels.synthetic.make_inputs (RF-DETR-seg-nano-like: blob masks, a few confident
pairs) and `expected` from the torch reference on the CPU. Same seeds and library versions give the
same tensors and bytes. Usage: python scripts/make_sample_cases.py [--out cases/samples]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from cases.caseset import MANIFEST_NAME, case_path, list_case_files, manifest_entry, write_manifest
from cases.format import write_case
from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs

REPO = Path(__file__).resolve().parents[1]

# Each set: options shared by its cases, then one (seed, frame sizes) per case. Sizes are (H, W).
SAMPLE_SETS: dict[str, dict] = {
    "nano-312": {
        "description": "stretch resize to 312x312, Q=100, 91 class logits, 78x78 fp32 masks, B=1",
        "options": {"queries": 100, "classes": 91, "input_size": 312, "dtype": torch.float32},
        "cases": [(312001, [(360, 640)]), (312002, [(720, 1280)])],
    },
    "nano-letterbox": {
        "description": "letterbox + static crop + class mapping + per-class thresholds, fp16, B=2, Q=50 "
        "(fewer queries than nano's 100 to keep the samples under 10 MB)",
        "options": {
            "batch": 2,
            "queries": 50,
            "classes": 91,
            "input_size": 312,
            "letterbox": True,
            "static_crop": True,
            "class_mapping": True,
            "per_class_threshold": True,
            "dtype": torch.float16,
            "num_confident": 8,
        },
        "cases": [(312101, [(360, 640), (480, 640)]), (312102, [(720, 1280), (1080, 1920)])],
    },
}


def _versions() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__}


def _option_json(options: dict) -> dict:
    return {
        key: str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value
        for key, value in options.items()
    }


def make_set(directory: Path, spec: dict) -> list[Path]:
    """Write one sample set (cases + manifest) into directory, replacing any case files already there."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in list_case_files(directory):
        old.unlink()
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    common = {
        "source": "synthetic",
        "model": "none: synthetic RF-DETR-seg-nano-like outputs (kernels.synthetic.make_inputs)",
        "backend": "synthetic",
        "impl": "reference",
        "device": "cpu",
        "versions": _versions(),
    }
    entries = []
    written = []
    for index, (seed, frame_sizes) in enumerate(spec["cases"]):
        inputs = make_inputs(seed, frame_sizes=frame_sizes, **spec["options"])
        expected = postprocess_reference(inputs)
        if not all(len(det) for det in expected):
            raise SystemExit(f"seed {seed} gives an image without detections; pick another seed")
        path = case_path(directory, index)
        provenance = {
            **common,
            "frame_index": index,
            "generator": "scripts/make_sample_cases.py",
            "seed": seed,
            "synthetic_options": {**_option_json(spec["options"]), "frame_sizes": frame_sizes},
        }
        write_case(path, inputs, expected, provenance)
        entries.append(manifest_entry(path, inputs, expected, frame_index=index, seed=seed))
        written.append(path)
    write_manifest(directory, {**common, "description": spec["description"], "cases": entries})
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "cases" / "samples", help="parent directory of the sets")
    args = parser.parse_args(argv)
    total = 0
    for name, spec in SAMPLE_SETS.items():
        for path in make_set(args.out / name, spec):
            total += path.stat().st_size
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
