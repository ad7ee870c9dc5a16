"""MTCNN's cascade (facenet-pytorch's ``detect_face``) with its image resampling done exactly
from integral images: the same boxes and scores, bit for bit, in less time.

facenet-pytorch resizes with ``interpolate(mode="area")`` (adaptive average pooling): once per
pyramid scale over the whole frame batch, then once PER CANDIDATE BOX for R-Net (24x24) and
O-Net (48x48) - thousands of small calls per batch of frames, about 40% of MTCNN's time on a
CPU (``bench/analyze.py``'s profile). Its inputs are uint8 frames cast to float, so every
window sum is a sum of integers, exact in float32 below 2**24 whatever the order. Here each
window sum comes from an int64 integral image (4 lookups per output pixel; all boxes of a batch
gathered in one numpy call) and is divided as PyTorch divides it (``sum / kh / kw`` in float32),
so the resampled pixels equal PyTorch's bit for bit (``tests/datasets_builders/
test_mtcnn_cascade.py`` checks them, and the boxes against ``detect_face`` itself, on FF++
frames). The networks, thresholds, NMS and box regression are facenet-pytorch's own code on
tensors of the same values and memory layout as ``detect_face`` makes them.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms,
    batched_nms_numpy,
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    pad,
    rerec,
)

#: the largest window sum that float32 holds exactly (integer-valued pixels <= 255)
_EXACT_LIMIT = 2 ** 24


def integral_images(images: np.ndarray) -> np.ndarray:
    """(N, H+1, W+1, C) integral images of (N, H, W, C) uint8 images (OpenCV's: a zero first row
    and column; int32 where every sum fits, else float64, exact for integers below 2**53): the
    sum over rows [a, b) and columns [c, d) is ``S[b,d] - S[a,d] - S[b,c] + S[a,c]``."""
    n, h, w, c = images.shape
    depth, dtype = ((cv2.CV_32S, np.int32) if h * w * 255 < 2 ** 31
                    else (cv2.CV_64F, np.float64))
    out = np.empty((n, h + 1, w + 1, c), dtype=dtype)
    for k in range(n):
        out[k] = cv2.integral(images[k], sdepth=depth).reshape(h + 1, w + 1, c)
    return out


def _windows(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive pooling's windows along one axis: for inputs of ``length`` (per row of
    ``start``) pooled to ``size``, the first and one-past-last input index of each output
    (PyTorch's ``start_index``/``end_index``: floor(o*L/size), ceil((o+1)*L/size))."""
    o = np.arange(size, dtype=np.int64)
    length = length[:, None]
    lo = (o * length) // size
    hi = ((o + 1) * length + size - 1) // size
    return start[:, None] + lo, start[:, None] + hi


def area_resize(integral: np.ndarray, frame: np.ndarray, y0: np.ndarray, x0: np.ndarray,
                y1: np.ndarray, x1: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Regions ``[y0, y1) x [x0, x1)`` of frames ``frame`` (per region) resized to
    ``out_h x out_w`` as ``interpolate(mode="area")`` does: (B, out_h, out_w, C) float32."""
    r0, r1 = _windows(y0, y1 - y0, out_h)  # (B, out_h)
    c0, c1 = _windows(x0, x1 - x0, out_w)  # (B, out_w)
    f = frame[:, None, None]
    a, b = r0[:, :, None], r1[:, :, None]
    c, d = c0[:, None, :], c1[:, None, :]
    sums = integral[f, b, d] - integral[f, a, d] - integral[f, b, c] + integral[f, a, c]
    if sums.size and sums.max() >= _EXACT_LIMIT:
        raise ValueError("area window sums beyond float32's exact integers")
    kh = (r1 - r0).astype(np.float32)[:, :, None, None]
    kw = (c1 - c0).astype(np.float32)[:, None, :, None]
    return sums.astype(np.float32) / kh / kw  # as PyTorch: float(sum) / kh / kw


def _as_batch(pixels: np.ndarray, device, channels_last: bool) -> torch.Tensor:
    """(B, H, W, C) float32 -> (B, C, H, W) tensor normalised as MTCNN's nets expect, in the
    memory layout ``detect_face`` gives them (channels-last pyramid levels; contiguous box
    crops): a convolution's float rounding may depend on the layout. The normalisation is
    ``detect_face``'s ``(x - 127.5) * 0.0078125`` in float32, done in place in numpy (each
    step rounds as PyTorch's; the scaling by 2**-7 is exact)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    pixels -= np.float32(127.5)
    pixels *= np.float32(0.0078125)
    t = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2)
    return t if channels_last else t.contiguous()


def _box_crops(integral: np.ndarray, inds: np.ndarray, y, ey, x, ex, side: int, device
               ) -> torch.Tensor:
    """The R-Net/O-Net inputs of ``detect_face``: each box's pixels (1-based, clipped by
    ``pad``) resized to ``side`` x ``side``; boxes with no pixel inside are left out, as there."""
    keep = (ey > (y - 1)) & (ex > (x - 1))
    y0, x0 = (y - 1)[keep].astype(np.int64), (x - 1)[keep].astype(np.int64)
    y1, x1 = ey[keep].astype(np.int64), ex[keep].astype(np.int64)
    # a slice's stop beyond the image is cut to it, a negative start counts from the end;
    # pad() keeps 1 <= y and ey <= h, so neither happens here
    return _as_batch(area_resize(integral, inds[keep], y0, x0, y1, x1, side, side), device,
                     channels_last=False)


def _refine(integral: np.ndarray, boxes: torch.Tensor, image_inds: torch.Tensor, padded,
            side: int, net, score_output: int, threshold: float, device):
    """A refinement stage's net (R-Net: 24 px, scores in output 1; O-Net: 48 px, output 2) on
    every candidate box of the batch in one call, as ``detect_face`` runs it: the boxes whose
    face score passes ``threshold`` (with that score), their frame indices and their box
    regression."""
    y, ey, x, ex = padded
    im_data = _box_crops(integral, image_inds.cpu().numpy(), y, ey, x, ex, side, device)
    out = fixed_batch_process(im_data, net)
    regression = out[0].permute(1, 0)
    score = out[score_output].permute(1, 0)[1, :]
    ipass = score > threshold
    kept = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    return kept, image_inds[ipass], regression[:, ipass].permute(1, 0)


def detect_faces(images: np.ndarray, minsize: float, pnet, rnet, onet, threshold, factor: float,
                 device) -> list[np.ndarray]:
    """``facenet_pytorch...detect_face`` on (N, H, W, 3) uint8 frames of one size: per frame an
    ``(n, 5)`` float array of boxes and scores, equal to ``detect_face``'s (its landmarks are
    not computed; nobody here uses them)."""
    images = np.ascontiguousarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {images.shape} {images.dtype}")
    model_dtype = next(pnet.parameters()).dtype
    if model_dtype != torch.float32:
        raise ValueError(f"MTCNN weights in {model_dtype}: the exact resampling is float32")
    integral = integral_images(images)
    batch_size, h, w = images.shape[:3]
    m = 12.0 / minsize
    minl = min(h, w) * m
    scales = []
    scale_i = m
    while minl >= 12:
        scales.append(scale_i)
        scale_i = scale_i * factor
        minl = minl * factor

    everyone = np.arange(batch_size)
    zeros, hs, ws = np.zeros(batch_size, np.int64), np.full(batch_size, h), np.full(batch_size, w)
    boxes, image_inds, scale_picks = [], [], []
    offset = 0
    for scale in scales:
        level = area_resize(integral, everyone, zeros, zeros, hs, ws,
                            int(h * scale + 1), int(w * scale + 1))
        reg, probs = pnet(_as_batch(level, device, channels_last=True))
        boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
        boxes.append(boxes_scale)
        image_inds.append(image_inds_scale)
        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
        scale_picks.append(pick + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(boxes, dim=0)
    image_inds = torch.cat(image_inds, dim=0)
    scale_picks = torch.cat(scale_picks, dim=0)
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]

    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    boxes = rerec(boxes)
    y, ey, x, ex = pad(boxes, w, h)

    if len(boxes) > 0:  # second stage: R-Net on every candidate of the batch in one call
        boxes, image_inds, mv = _refine(integral, boxes, image_inds, (y, ey, x, ex), 24, rnet, 1,
                                        threshold[1], device)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = bbreg(boxes, mv)
        boxes = rerec(boxes)

    if len(boxes) > 0:  # third stage: O-Net, then NMS "Min" within each frame
        y, ey, x, ex = pad(boxes, w, h)
        boxes, image_inds, mv = _refine(integral, boxes, image_inds, (y, ey, x, ex), 48, onet, 2,
                                        threshold[2], device)
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds = boxes[pick], image_inds[pick]

    found = boxes.cpu().numpy()
    inds = image_inds.cpu().numpy()
    return [np.asarray(found[inds == b], dtype=np.float64).reshape(-1, 5)
            for b in range(batch_size)]


__all__ = ["area_resize", "detect_faces", "integral_images"]
