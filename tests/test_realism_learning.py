"""Must-show: a small realism model learns a known MOS from real faces and generalises to
people it never saw. Ground truth: graded self-blended fakes (``detectors.realism.graded``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets_builders.synthetic import demo_faces
from detectors.realism import metrics
from detectors.realism.clips import video_face_track
from detectors.realism.config import DataConfig, RealismConfig, TrainConfig
from detectors.realism.graded import graded_clips
from detectors.realism.model import ModelConfig
from detectors.realism.predict import predict_clips
from detectors.realism.sampler import SequenceSampler
from detectors.realism.train import train_regressor

SIZE = 64


def _still_to_frames(face: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A still photo as a short handheld "video": small random shifts of the crop."""
    import cv2

    out = []
    for _ in range(n):
        m = np.float32([[1, 0, rng.uniform(-2, 2)], [0, 1, rng.uniform(-2, 2)]])
        out.append(cv2.warpAffine(face, m, face.shape[1::-1], borderMode=cv2.BORDER_REFLECT))
    return out


@pytest.fixture(scope="module")
def faces_by_person(ffpp_root):
    """Seven real people: three FF++ originals and one DFDC video (MTCNN tracks), the FF++
    example frame, the astronaut (scikit-image) and Grace Hopper (matplotlib's sample photo)."""
    import matplotlib.cbook

    from datasets_builders.faces import FaceDetector, crop_face
    from mrigan.fileio import read_image

    torch.set_num_threads(2)
    detector = FaceDetector(device="cpu", max_side=480)
    videos = ffpp_root / "original_sequences" / "youtube" / "c23" / "videos"
    people = {}
    for vid in ("004", "519", "634"):
        track = video_face_track(videos / f"{vid}.mp4", detector=detector, every=3, max_frames=30,
                                 size=SIZE, detect_every=10)
        people[f"ffpp{vid}"] = [crop for _, crop in track]
    track = video_face_track(ffpp_root.parent / "dfdc_unpaired" / "widuwuoiur.mp4", detector=detector,
                             every=3, max_frames=12, size=SIZE, detect_every=6)
    people["dfdc"] = [crop for _, crop in track]
    stills = {"hopper": matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False),
              "ffexample": ffpp_root.parent / "ff_examples" / "ex_original.png"}
    for k, (name, path) in enumerate(stills.items()):
        photo = read_image(path)
        box = detector.detect([photo])[0][0]
        people[name] = _still_to_frames(crop_face(photo, box, size=SIZE), 12, np.random.default_rng(k))
    people["astronaut"] = demo_faces(SIZE)
    assert all(len(v) >= 6 for v in people.values()), {k: len(v) for k, v in people.items()}
    return people


def test_small_model_learns_graded_realism_on_unseen_people(faces_by_person):
    train_people = ("ffpp519", "ffpp634", "astronaut", "ffexample", "dfdc")
    test_people = ("ffpp004", "hopper")  # a heavily compressed video and an old photograph
    levels = tuple(np.linspace(0.0, 1.0, 9))
    train = graded_clips({p: faces_by_person[p] for p in train_people}, levels,
                         clips_per_level=1, frames_per_clip=6, seed=0)
    test = graded_clips({p: faces_by_person[p] for p in test_people}, levels,
                        clips_per_level=2, frames_per_clip=6, seed=1)
    assert not {i for c in train for i in c.record.identities} & {i for c in test for i in c.record.identities}
    cfg = RealismConfig(
        data=DataConfig(image_size=SIZE),
        sampler=SequenceSampler(num_frames=5, stride=1, test_draws=10),
        model=ModelConfig(backbone="tiny-cnn", inputs="plain", hidden=64, dropout=0.2),
        train=TrainConfig(epochs=10, batch_size=8, lr=2e-3, loss="rmse", device="cpu",
                          precision="fp32", threads=2, tensorboard=False, seed=0),
    )
    result = train_regressor(cfg, train, (), out_dir=None, log=lambda _: None)
    pred = predict_clips(result.model, test, cfg.sampler, inputs="plain", size=SIZE)
    truth = np.array([c.mos for c in test])
    report = metrics.mos_report(truth, pred)
    print("unseen people:", {k: round(v, 3) for k, v in report.items()})
    assert report["srcc"] >= 0.8, report
    assert report["rmse"] < truth.std()  # better than always answering the mean MOS
    # the losses fell: training did the work, not the initialisation
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]
