"""``mrigan benchmark``: the MRI-GAN paper's protocol as one resumable command (application
layer: it drives the builders, the GAN, the detectors and their evaluation)."""
