"""Frame and temporal deepfake detectors (plain or MRI inputs), aggregation and metrics."""

from detectors import reseption as _reseption  # noqa: F401 - registers the reseption-* backbones
