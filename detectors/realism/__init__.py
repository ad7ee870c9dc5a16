"""Realism (MOS) regressors for deepfake videos, with plain or MRI inputs."""
