"""Training-time augmentations by name (albumentations), on uint8 RGB images.

Names: ``flip``, ``blur``, ``color_jitter``, ``random_resized_crop``, ``random_erasing``,
``jpeg``. Their tunable parameters come from :class:`detectors.config.AugmentParams`
(``train.augment_params``; today the JPEG quality range and probability). For the ``mri`` input the augmentation is applied to the image the model sees: a
cached MRI, or the face *before* an on-the-fly generator (so JPEG and blur act on the face, as
they would on a real upload, and the MRI reflects them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from detectors.config import AugmentParams
from mrigan.registry import Registry

AUGMENTATIONS = Registry("augmentation")


def _albumentations():
    import albumentations as A

    return A


@AUGMENTATIONS.register("flip")
def _flip(size: int, params: AugmentParams):
    return _albumentations().HorizontalFlip(p=0.5)


@AUGMENTATIONS.register("blur")
def _blur(size: int, params: AugmentParams):
    return _albumentations().GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.5), p=0.2)


@AUGMENTATIONS.register("color_jitter")
def _color_jitter(size: int, params: AugmentParams):
    return _albumentations().ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02,
                                         p=0.5)


@AUGMENTATIONS.register("random_resized_crop")
def _random_resized_crop(size: int, params: AugmentParams):
    return _albumentations().RandomResizedCrop(size=(size, size), scale=(0.8, 1.0),
                                               ratio=(0.9, 1.1), p=0.5)


@AUGMENTATIONS.register("random_erasing")
def _random_erasing(size: int, params: AugmentParams):
    return _albumentations().CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.1, 0.25),
                                           hole_width_range=(0.1, 0.25), fill=0, p=0.3)


@AUGMENTATIONS.register("jpeg")
def _jpeg(size: int, params: AugmentParams):
    return _albumentations().ImageCompression(quality_range=tuple(params.jpeg_quality),
                                              p=params.jpeg_p)


class Augmenter:
    """``aug(img, key)`` for one image, ``aug.many(frames, key)`` for a clip (one draw for all).

    ``key`` (e.g. ``(seed, epoch, index)``) reseeds the draw, so an item is augmented the same
    way whichever DataLoader worker loads it and a resumed run repeats the interrupted epoch.
    """

    def __init__(self, names: Sequence[str], image_size: int, seed: int | None = None,
                 max_frames: int = 1, params: AugmentParams | None = None) -> None:
        A = _albumentations()
        self.names = tuple(names)
        self.params = params or AugmentParams()
        transforms = [AUGMENTATIONS.build(n, image_size, self.params) for n in self.names]
        extra = {f"image{i}": "image" for i in range(1, max_frames)}
        self.compose: Callable = A.Compose(transforms, additional_targets=extra, seed=seed)
        self.max_frames = max_frames

    def _reseed(self, key: Sequence[int] | None) -> None:
        if key is not None:
            seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])
            self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, key: Sequence[int] | None = None) -> np.ndarray:
        self._reseed(key)
        return self.compose(image=image)["image"]

    def many(self, frames: Sequence[np.ndarray],
             key: Sequence[int] | None = None) -> list[np.ndarray]:
        self._reseed(key)
        if len(frames) > self.max_frames:
            raise ValueError(f"{len(frames)} frames but the augmenter was built for "
                             f"{self.max_frames}")
        inputs = {"image": frames[0], **{f"image{i}": f for i, f in enumerate(frames) if i}}
        out = self.compose(**inputs)
        return [out["image"]] + [out[f"image{i}"] for i in range(1, len(frames))]


def build_augmenter(names: Sequence[str], image_size: int, seed: int | None = None,
                    max_frames: int = 1, params: AugmentParams | None = None) -> Augmenter | None:
    """None when ``names`` is empty (no augmentation at all, e.g. for evaluation)."""
    return Augmenter(names, image_size, seed, max_frames, params) if names else None
