"""Frame and temporal deepfake detectors (plain or MRI inputs), aggregation and metrics."""
