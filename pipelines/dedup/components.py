"""Connected components of a graph held as a PCollection of edges, computed in Beam.

Alternating large-star and small-star rounds (Kiveris et al., "Connected Components in MapReduce
and Beyond", SoCC 2014): each round groups edges by node on whichever workers the runner has, so
no worker ever holds the whole graph, and the graph shrinks to one star per component whose
centre is the component's smallest node. A chain A~B~C where A and C are not similar is one
component. Rounds needed grow with the logarithm of the component size in practice.

Each round counts the edges it changed (`dedup/cc_round_NN_changes`); a round that changes
nothing means the stars are final. `Components(rounds)` unrolls a fixed number of rounds into one
pipeline; the caller reads the counters and, when the last round still changed something, runs
more rounds on the saved edges (see `pipelines.dedup.stage.build_dedup`), up to a bound.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = "dedup"


def round_counter(round_no: int) -> str:
    return f"cc_round_{round_no:02d}_changes"


class _Round(beam.DoFn):
    """A step of round `round_no`, counting the edges it changes."""

    def __init__(self, round_no: int):
        self.round_no = round_no

    def setup(self):
        self.changes = Metrics.counter(NAMESPACE, round_counter(self.round_no))


class _LargeStar(_Round):
    """Node u and all its neighbours: every larger neighbour is linked to the smallest of u's
    closed neighbourhood instead of u."""

    def process(self, element):
        u, neighbours = element
        neighbours = set(neighbours)
        m = min(min(neighbours), u)
        for v in neighbours:
            if v > u:
                if m != u:
                    self.changes.inc()
                yield (m, v)


class _SmallStar(_Round):
    """Node u and its smaller neighbours: all of them, and u, are linked to the smallest one."""

    def process(self, element):
        u, smaller = element
        smaller = set(smaller)
        m = min(smaller)
        for v in smaller:
            if v != m:
                self.changes.inc()
                yield (m, v)
        yield (m, u)


def _both_ways(edge):
    a, b = edge
    yield a, b
    yield b, a


def _by_larger(edge):
    a, b = edge
    return (b, a) if a < b else (a, b)


class Rounds(beam.PTransform):
    """Edges (a, b) of int nodes -> the edges after `count` large-star + small-star rounds,
    numbered from `first`."""

    def __init__(self, count: int, first: int = 1):
        super().__init__()
        self.count, self.first = count, first

    def expand(self, edges):
        for i in range(self.first, self.first + self.count):
            edges = (edges
                     | f"LargeKeys{i}" >> beam.FlatMap(_both_ways)
                     | f"LargeGroup{i}" >> beam.GroupByKey()
                     | f"LargeStar{i}" >> beam.ParDo(_LargeStar(i))
                     | f"SmallKeys{i}" >> beam.Map(_by_larger)
                     | f"SmallGroup{i}" >> beam.GroupByKey()
                     | f"SmallStar{i}" >> beam.ParDo(_SmallStar(i)))
        return edges


def star_members(edge):
    """A final star edge (root, leaf) -> (leaf, root) and (root, root): every member with its
    component's root (the root once per leaf; consumers keep a set)."""
    root, leaf = edge
    yield leaf, root
    yield root, root


def first_settled_round(counters: dict[str, int], first: int, last: int) -> int | None:
    """The first round in first..last that changed nothing, or None when all changed edges."""
    for i in range(first, last + 1):
        if counters.get(f"{NAMESPACE}/{round_counter(i)}", 0) == 0:
            return i
    return None
