"""The embedded default model: a weight-free STAND-IN detector. It is NOT RF-DETR and detects nothing
semantically; it exists so capture works on any video without weights, producing raw outputs shaped and
distributed like RF-DETR seg's (Q=100 queries, 91 class logits, mask logits at input/4: 312 -> 78).

What it does per frame (all on the CPU with OpenCV/numpy, deterministic for a given seed):
1. Foreground: pixels that differ from a background model (the per-pixel median of frames sampled over
   the video, refreshed as the video plays), or, for still images and before any background exists,
   pixels that stand out (frequency-tuned colour saliency).
2. Connected components of the cleaned foreground become objects; each gets one query with a box
   (its bounding box, cxcywh normalised), a smooth mask-logit field that crosses zero at the component's
   border (a scaled, smoothed signed distance, saturating like real logits), and a confident class
   chosen deterministically from its colour, shape and size; some get a second plausible class for the
   same query, and some a low-scoring duplicate query, as DETR-style models produce.
3. All other queries get low class logits, random boxes and noisy, mostly negative mask fields.
So detection counts, mask shapes and sizes follow the video while logit statistics look realistic.
"""

from __future__ import annotations

import zlib
from collections import deque

import numpy as np
import torch

from capture.backends.base import Backend, ModelOutputs

__all__ = ["StandInDetector", "COCO_CATEGORY_IDS"]

# The 80 COCO category ids (1..90 with gaps): the indices of RF-DETR's 91 COCO logits that are used.
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

QUERIES = 100
CLASS_LOGITS = 91
INPUT_SIZE = 312
_BG_SAMPLES = 25  # frames in the background median
_BG_MIN_SAMPLES = 5  # below this, fall back to saliency
_BG_REFRESH = 5  # add every 5th frame seen to the background samples
_DIFF_THRESHOLD = 28  # max |frame - background| over channels, in grey levels
_MIN_AREA_FRACTION = 0.0006  # components smaller than this share of the image are noise
_MAX_OBJECTS = 30


class StandInDetector(Backend):
    """Weight-free stand-in for RF-DETR seg (see module docstring); not a real detector."""

    name = "standin"
    spec = "standin"

    def __init__(self, *, seed: int = 0, stills: bool = False, input_size: int = INPUT_SIZE) -> None:
        if input_size % 8:
            raise ValueError("input_size must be a multiple of 8")
        self.input_size = input_size
        self.num_classes = CLASS_LOGITS  # logit index = COCO category id (0..90), as RF-DETR's COCO head
        self.seed = seed
        self.stills = stills
        self.wants_priming = not stills
        self.work_size = input_size // 2
        self.mask_size = input_size // 4
        self._samples: deque[np.ndarray] = deque(maxlen=_BG_SAMPLES)
        self._background: np.ndarray | None = None
        self._seen = 0

    def describe(self) -> dict:
        return {
            "model": self.spec,
            "backend": self.name,
            "input_size": self.input_size,
            "note": "weight-free stand-in detector, not RF-DETR",
        }

    def reset(self) -> None:
        self._samples.clear()
        self._background = None
        self._seen = 0

    def prime(self, images: list[np.ndarray]) -> None:
        """Seed the background model with model-input frames sampled across the video."""
        for image in images:
            self._samples.append(self._small(image))
        self._background = self._median() if len(self._samples) >= _BG_MIN_SAMPLES else None

    # -- model ---------------------------------------------------------------------------------------------

    def infer(self, images: np.ndarray, device: torch.device) -> ModelOutputs:
        batch = images.shape[0]
        m = self.mask_size
        boxes = np.zeros((batch, QUERIES, 4), np.float32)
        logits = np.zeros((batch, QUERIES, CLASS_LOGITS), np.float32)
        masks = np.zeros((batch, QUERIES, m, m), np.float32)
        for b in range(batch):
            # Seeded by the frame's pixels: the same frame gets the same noise in any run or batch.
            rng = np.random.default_rng([self.seed, zlib.crc32(np.ascontiguousarray(images[b]).data)])
            self._one(images[b], rng, boxes[b], logits[b], masks[b])
        return ModelOutputs(
            boxes=torch.from_numpy(boxes).to(device),
            logits=torch.from_numpy(logits).to(device),
            masks=torch.from_numpy(masks).to(device),
        )

    def _one(
        self, image: np.ndarray, rng: np.random.Generator, boxes: np.ndarray, logits: np.ndarray, masks: np.ndarray
    ) -> None:
        small = self._small(image)
        foreground = self._foreground(small)
        objects = self._components(foreground, small)
        order = rng.permutation(QUERIES)
        # Background queries first (all of them), then objects overwrite their own queries.
        self._noise_queries(rng, boxes, logits, masks)
        slot = 0
        for obj in objects:
            if slot >= QUERIES:
                break
            q = order[slot]
            slot += 1
            field = self._mask_logits(obj["mask"], rng)
            masks[q] = field
            boxes[q] = obj["box"] + rng.normal(0, 0.001, 4).astype(np.float32)
            primary, second, confidence = self._classes(obj, rng)
            logits[q] = rng.normal(-7.0, 1.0, CLASS_LOGITS)
            logits[q, primary] = confidence
            if second is not None:
                logits[q, second] = confidence - rng.uniform(1.5, 4.0)
            if slot < QUERIES and rng.random() < 0.6:  # a low-scoring duplicate, slightly off
                d = order[slot]
                slot += 1
                shift = rng.integers(-2, 3, size=2)
                masks[d] = _saturate(np.roll(field, tuple(int(s) for s in shift), axis=(0, 1)) - rng.uniform(0.5, 2.0))
                boxes[d] = obj["box"] * rng.uniform(0.95, 1.05, 4).astype(np.float32)
                logits[d] = rng.normal(-7.0, 1.0, CLASS_LOGITS)
                logits[d, primary] = confidence - rng.uniform(3.0, 6.0)
        self._update_background(small, foreground)

    # -- foreground ----------------------------------------------------------------------------------------

    def _small(self, image: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.resize(image, (self.work_size, self.work_size), interpolation=cv2.INTER_AREA)

    def _median(self) -> np.ndarray:
        return np.median(np.stack(self._samples), axis=0).astype(np.uint8)

    def _foreground(self, small: np.ndarray) -> np.ndarray:
        import cv2

        if self.stills or self._background is None:
            fg = self._saliency(small)
        else:
            diff = np.abs(small.astype(np.int16) - self._background.astype(np.int16)).max(axis=2)
            fg = (diff > _DIFF_THRESHOLD).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        return fg

    def _saliency(self, small: np.ndarray) -> np.ndarray:
        """Frequency-tuned saliency (Achanta et al. 2009): Lab distance of each blurred pixel from the image's
        mean colour, thresholded at twice its mean; finds whole objects that differ from the scene."""
        import cv2

        lab = cv2.cvtColor(cv2.GaussianBlur(small, (5, 5), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
        sal = np.linalg.norm(lab - lab.reshape(-1, 3).mean(axis=0), axis=2)
        return (sal > 2.0 * float(sal.mean())).astype(np.uint8)

    def _update_background(self, small: np.ndarray, foreground: np.ndarray) -> None:
        if self.stills:
            return
        self._seen += 1
        if self._background is not None:
            # Slowly absorb lighting changes where nothing moves; the median refresh handles the rest.
            bg = self._background.astype(np.float32)
            still = foreground == 0
            bg[still] = 0.95 * bg[still] + 0.05 * small[still]
            self._background = bg.round().astype(np.uint8)
        if self._seen % _BG_REFRESH == 1 or self._background is None:
            self._samples.append(small)
            if len(self._samples) >= _BG_MIN_SAMPLES:
                self._background = self._median()

    # -- objects -------------------------------------------------------------------------------------------

    def _components(self, foreground: np.ndarray, small: np.ndarray) -> list[dict]:
        import cv2

        n, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
        s = float(self.work_size)
        min_area = max(4, int(_MIN_AREA_FRACTION * s * s))
        found = []
        for label in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[label])
            if area < min_area:
                continue
            mask = labels == label
            colour = small[mask].mean(axis=0)
            found.append(
                {
                    "mask": mask,
                    "area": area,
                    "fill": area / float(w * h),
                    "aspect": w / float(h),
                    "colour": colour,
                    "box": np.array([(x + w / 2) / s, (y + h / 2) / s, w / s, h / s], np.float32),
                }
            )
        found.sort(key=lambda o: -o["area"])
        return found[:_MAX_OBJECTS]

    def _mask_logits(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Signed distance to the border (mask pixels), scaled and smoothed; > 0 inside, saturating."""
        import cv2

        inside = mask.astype(np.uint8)
        d_in = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        m = self.mask_size
        sdf = cv2.resize(d_in - d_out, (m, m), interpolation=cv2.INTER_AREA) * (m / self.work_size)
        slope = rng.uniform(2.5, 4.5)
        noise = cv2.GaussianBlur(rng.normal(0, 0.6, (m, m)).astype(np.float32), (0, 0), 1.5)
        field = cv2.GaussianBlur((slope * sdf).astype(np.float32), (0, 0), 0.8) + noise
        return _saturate(field)

    def _classes(self, obj: dict, rng: np.random.Generator) -> tuple[int, int | None, float]:
        """Deterministic class from colour/shape/size; a second class when the features are ambiguous."""
        r, g, b = (float(c) for c in obj["colour"])
        hue = (np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)) + 360.0) % 360.0
        hue_bin = int(hue // 45)
        aspect = obj["aspect"]
        shape_bin = 0 if aspect < 0.75 else (1 if aspect < 1.33 else 2)
        size_bin = min(3, int(np.log2(max(obj["area"], 1)) // 3))
        index = (hue_bin * 11 + shape_bin * 29 + size_bin * 7) % len(COCO_CATEGORY_IDS)
        primary = COCO_CATEGORY_IDS[index]
        ambiguous = (hue % 45) < 4 or (hue % 45) > 41 or 0.7 < aspect < 0.8 or 1.25 < aspect < 1.4
        second = COCO_CATEGORY_IDS[(index + 1 + shape_bin) % len(COCO_CATEGORY_IDS)] if ambiguous else None
        # Larger, more solid objects are more confident; tiny ones hover around the threshold.
        area_fraction = obj["area"] / float(self.work_size**2)
        confidence = -1.2 + 0.5 * np.log10(area_fraction * 1e4 + 1) + 2.0 * obj["fill"] + rng.normal(0, 0.3)
        return primary, second, float(np.clip(confidence, -3.0, 4.5))

    def _noise_queries(
        self, rng: np.random.Generator, boxes: np.ndarray, logits: np.ndarray, masks: np.ndarray
    ) -> None:
        m = self.mask_size
        logits[:] = rng.normal(-6.5, 1.3, logits.shape)
        hot = rng.integers(0, CLASS_LOGITS, size=QUERIES)
        logits[np.arange(QUERIES), hot] = rng.normal(-3.5, 1.0, QUERIES)
        wh = rng.uniform(0.02, 0.6, (QUERIES, 2))
        centre = rng.uniform(0.05, 0.95, (QUERIES, 2))
        boxes[:] = np.concatenate([centre, wh], axis=1)
        coarse = torch.from_numpy(rng.normal(0, 1, (QUERIES, 1, 6, 6)).astype(np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(m, m), mode="bicubic", align_corners=False)
        masks[:] = _saturate(smooth[:, 0].numpy() * 6.0 - 9.0)


def _saturate(field: np.ndarray) -> np.ndarray:
    """Real mask logits saturate: roughly +10 deep inside an object, -25 far outside."""
    return np.where(field > 0, 10.0 * np.tanh(field / 10.0), 25.0 * np.tanh(field / 25.0)).astype(np.float32)
