"""The application layer: the ``mrigan`` command line, the analyst pipeline and its report, the demo.

It sits on top of the three library layers and orchestrates them; nothing in ``mrigan`` (core),
``datasets_builders`` or ``detectors`` imports it (checked by ``make lint``).
"""
