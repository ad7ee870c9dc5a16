"""Dataset readers: each lists a dataset's videos (or images) as ``VideoItem``s.

``read_source(kind, root, **options)`` picks a reader by name (``ffpp``, ``dfdc``,
``celebdf``, ``csv``, ``images``); every reader returns a ``Listing``: the items found plus
the entries it had to skip, each with its reason (a listed file that does not exist, a name
that does not follow the dataset's convention, ...). Readers only read: they never open the
videos and never write anything.
"""

# importing the reader modules registers them in SOURCES
from datasets_builders.sources import celebdf, csv_list, dfdc, ffpp, images  # noqa: E402,F401,I001
from datasets_builders.sources.base import (
    SOURCES,
    Listing,
    Skip,
    SourceError,
    VideoItem,
    read_source,
)

__all__ = ["SOURCES", "Listing", "Skip", "SourceError", "VideoItem", "read_source"]
