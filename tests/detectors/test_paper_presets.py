"""The papers' presets in configs/ load with their classes and hold the papers' values."""

from __future__ import annotations

from datasets_builders.mri_df import BuildConfig
from mrigan.config import load_config
from mrigan.train import GanConfig


def test_mri_df_paper_sources():
    cfg = load_config(BuildConfig, "configs/build_mri_df_paper.yaml")
    sources = {(s.kind, s.name or s.kind): s.fraction for s in cfg.sources}
    assert sources == {("dfdc", "dfdc"): 0.5, ("celebdf", "celebdf"): 1.0,
                       ("images", "ffhq"): 1.0, ("images", "fdf"): 1.0}
    assert cfg.every == 10 and cfg.faces.margin == 1.3 and cfg.faces.size == 256
    assert cfg.detect_every == 1  # the paper runs MTCNN on every sampled frame (default: 3)


def test_mri_gan_paper_text_uses_eq_9_and_the_papers_monitoring():
    paper = load_config(GanConfig, "configs/mri_gan_paper_text.yaml")
    code = load_config(GanConfig, "configs/mri_gan.yaml")
    assert paper.loss.gan == "bce" and code.loss.gan == "lsgan"
    assert (paper.train.eval_every, paper.data.eval_samples) == (200, 16)
    assert (paper.loss.lambda_recon, paper.loss.tau, paper.loss.eta) == (100.0, 0.3, 0.5)
    # everything else is mri_gan.yaml's
    assert paper.model == code.model and paper.optim == code.optim


def test_xception_jpeg_study_preset_loads_with_the_studys_values():
    from detectors.backbones import build_backbone
    from detectors.config import DetectorConfig

    cfg = load_config(DetectorConfig, "configs/detector_xception_jpeg_study.yaml")
    tc = cfg.train
    assert tuple(tc.augment_params.jpeg_quality) == (10, 50) and tc.augment_params.jpeg_p == 1.0
    assert "jpeg" in tc.augment
    assert (tc.epochs, tc.batch_size, tc.lr) == (10, 32, 3e-4)
    assert cfg.data.image_size == 224 and cfg.model.backbone == "timm:legacy_xception"
    # the named backbone exists (Xception, ~20.8 M parameters without its classifier)
    backbone, dim = build_backbone(cfg.model.backbone)
    assert dim == 2048
    assert 20.5e6 < sum(p.numel() for p in backbone.parameters()) < 21.0e6
    # today's default is unchanged
    plain = load_config(DetectorConfig, "configs/detector_plain.yaml").train.augment_params
    assert (tuple(plain.jpeg_quality), plain.jpeg_p) == ((60, 100), 0.3)
