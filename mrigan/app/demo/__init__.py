"""``mrigan demo``'s steps, one job per module: ``config`` (DemoConfig, loader), ``scenes``
(synthetic scenes from packaged photos), ``data`` (MRI-DF from scenes or a real dataset; the
face loop ``scene_face_pairs``), ``training`` (``train_for``, export), ``calibration`` (held-out
figures, verdict threshold on val), ``videos`` (H.264 test videos), ``run`` (``run_demo``)."""
