"""Readers of real deepfake datasets, face extraction, augmentation plans, the MRI-DF builder."""
