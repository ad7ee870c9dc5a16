"""Disjoint sets (union-find): the grouping behind every leak-free split.

Videos, identities and swaps link into groups (a fake of A onto B joins A and B); each group
then goes to exactly one split, so no person or video is seen in two of them.
"""

from __future__ import annotations

from collections.abc import Hashable


class DisjointSets:
    """Union-find over hashable keys with path halving.

    The smaller of two roots stays the root, so the groups' representatives do not depend on
    the order in which links were added.
    """

    def __init__(self) -> None:
        self._parent: dict[Hashable, Hashable] = {}

    def find(self, key: Hashable) -> Hashable:
        parent = self._parent
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(self, a: Hashable, b: Hashable) -> Hashable:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        root, child = (ra, rb) if ra < rb else (rb, ra)
        self._parent[child] = root
        return root
