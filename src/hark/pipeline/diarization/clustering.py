"""Grouping voice vectors by speaker, with an automatic speaker count.

Plain functions on arrays: rows of `vectors` are unit-length embeddings of windows in
time order. The main entry point is `cluster_speakers`.

Count. Spectral clustering on a pruned cosine affinity graph: each window keeps an
edge only to its `p` most similar windows, and the number of near-zero eigenvalues of
the graph Laplacian (read off the largest eigengap) is the number of speakers. The
pruning level is chosen per recording as the one that makes that eigengap most
pronounced relative to how much was pruned. The eigengap cannot say "one speaker",
so a separate check asks whether the two halves of a two-way split are really
different voices.

Labels. The spectral partition seeds speaker centroids; windows are then re-labelled
with a Viterbi pass that charges for every speaker change, so isolated windows that
lean towards another voice do not become turns of their own, and centroids are
re-estimated from the result. Clusters that end up with too little speech are
dissolved into their nearest neighbours.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.linalg import eigh


@dataclass(frozen=True)
class ClusteringParams:
    # Pruning levels tried, as fractions of the windows each window stays linked to.
    prune_fractions: tuple[float, ...] = (0.05, 0.08, 0.12, 0.16, 0.2, 0.25, 0.3, 0.4)
    # ... but never fewer links than this. Each 1.5 s window overlaps four others
    # (hop 0.5 s) that are near copies of it; a graph whose links barely reach past
    # those falls apart into stretches of time that look like extra speakers.
    min_links: int = 6
    # The eigengap is unreliable for clusters of only a few nodes, so the automatic
    # count never exceeds the number of nodes divided by this.
    nodes_per_speaker: int = 5
    # One-voice evidence: two halves this alike (cosine of their centroids) are one
    # voice; between `distinct_voice` and `same_voice` they are one voice unless
    # they take turns; and a graph whose best eigengap is this weak (pruning level
    # over normalised gap) has no speaker structure at all.
    same_voice: float = 0.9
    distinct_voice: float = 0.8
    weak_structure: float = 2.2
    # Clusters found by the eigengap are merged only when this alike.
    merge_voice: float = 0.95
    # Cost of a speaker change in the Viterbi pass, in units of cosine similarity.
    switch_penalty: float = 0.05
    refine_rounds: int = 3
    # A speaker needs at least this many windows, unless the count was fixed.
    min_windows: int = 3
    # Above this many windows, consecutive windows are averaged before the eigen-
    # decomposition, which is cubic in the number of nodes.
    max_nodes: int = 800


@dataclass(frozen=True)
class CountBounds:
    low: int
    high: int

    @staticmethod
    def of(num: int | None, low: int | None, high: int | None, windows: int) -> CountBounds:
        if num is not None:
            count = max(1, min(num, windows))
            return CountBounds(count, count)
        top = min(high if high is not None else 8, windows)
        bottom = min(low if low is not None else 1, top)
        return CountBounds(max(1, bottom), max(1, top))

    @property
    def fixed(self) -> bool:
        return self.low == self.high


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12))


def cluster_speakers(vectors: np.ndarray, bounds: CountBounds,
                     params: ClusteringParams | None = None) -> np.ndarray:
    """A speaker index per row of `vectors`, numbered 0..k-1 in order of appearance."""
    params = params or ClusteringParams()
    n = vectors.shape[0]
    if n <= 1 or bounds.high == 1:
        return np.zeros(n, dtype=int)
    groups = _node_groups(n, params.max_nodes)
    nodes = unit_rows(np.stack([vectors[g].mean(axis=0) for g in groups]))
    if not bounds.fixed:
        ceiling = max(2, nodes.shape[0] // params.nodes_per_speaker)
        bounds = CountBounds(bounds.low, max(bounds.low, min(bounds.high, ceiling)))
    spectrum = spectral_count(nodes, bounds, params)
    count = spectrum.count
    if not bounds.fixed and _one_voice(nodes, spectrum, params):
        # No sign of a second voice: as few speakers as the caller allows.
        if bounds.low <= 1:
            return np.zeros(n, dtype=int)
        count = bounds.low
    node_labels = _kmeans(spectrum.coordinates(count), count)
    labels = np.empty(n, dtype=int)
    for group, label in zip(groups, node_labels, strict=True):
        labels[group] = label
    labels = refine(vectors, labels, params, keep=bounds.low)
    labels = _enforce_bounds(vectors, labels, bounds, params)
    return relabel_by_appearance(labels)


@dataclass(frozen=True)
class Spectrum:
    """The chosen pruned graph: speaker count, eigenvectors, and how clear the gap was."""

    count: int
    nodes: np.ndarray
    eigenvectors: np.ndarray | None
    # Pruning fraction over normalised eigengap; small means clear speaker structure.
    weakness: float

    def coordinates(self, count: int) -> np.ndarray:
        """Points to partition into `count` groups: spectral ones where the graph has any
        structure, else the vectors themselves."""
        if self.eigenvectors is None:
            return self.nodes
        return unit_rows(self.eigenvectors[:, :count])


def spectral_count(nodes: np.ndarray, bounds: CountBounds,
                   params: ClusteringParams) -> Spectrum:
    """The speaker count (at least two) within bounds, from the clearest eigengap."""
    n = nodes.shape[0]
    low = max(bounds.low, 2)
    # The gap after the k-th eigenvalue needs k + 1 of them; a graph where every node
    # links to every other has no gap at all.
    high = min(max(bounds.high, low), n - 1)
    if high < low or n <= params.min_links + 1:
        return Spectrum(max(1, min(low, n)), nodes, None, float("inf"))
    similarity = nodes @ nodes.T
    best: Spectrum | None = None
    for fraction in params.prune_fractions:
        p = min(n - 1, max(params.min_links, round(fraction * n)))
        values, vectors = eigh(_laplacian(_pruned_affinity(similarity, p)))
        # gaps[k - 1] is the gap after the k-th smallest eigenvalue.
        gaps = np.diff(values[: high + 1])
        count = low + int(np.argmax(gaps[low - 1: high]))
        gap = float(gaps[count - 1]) / max(float(values[-1]), 1e-9)
        weakness = (p / n) / max(gap, 1e-9)
        if best is None or weakness < best.weakness:
            best = Spectrum(count, nodes, vectors, weakness)
    assert best is not None
    return best


def _pruned_affinity(similarity: np.ndarray, p: int) -> np.ndarray:
    """Each row keeps its p strongest links (binarised); then made symmetric."""
    n = similarity.shape[0]
    order = np.argsort(-similarity, axis=1)[:, :p]
    affinity = np.zeros((n, n))
    affinity[np.arange(n)[:, None], order] = 1.0
    return (affinity + affinity.T) / 2


def _laplacian(affinity: np.ndarray) -> np.ndarray:
    np.fill_diagonal(affinity, 0.0)
    return np.asarray(np.diag(affinity.sum(axis=1)) - affinity)


def _one_voice(nodes: np.ndarray, spectrum: Spectrum, params: ClusteringParams) -> bool:
    """Whether the recording shows no sign of a second speaker."""
    if spectrum.weakness >= params.weak_structure:
        return True
    labels = refine(nodes, _kmeans(spectrum.coordinates(2), 2), params)
    if np.unique(labels).size < 2:
        return True
    a = unit_rows(nodes[labels == labels[0]].mean(axis=0, keepdims=True))[0]
    b = unit_rows(nodes[labels != labels[0]].mean(axis=0, keepdims=True))[0]
    similarity = float(a @ b)
    if similarity >= params.same_voice:
        return True
    return similarity >= params.distinct_voice and not _interleaved(
        labels, int(labels[0]), int(labels[labels != labels[0]][0]))


def refine(vectors: np.ndarray, labels: np.ndarray, params: ClusteringParams,
           keep: int = 1) -> np.ndarray:
    """Centroid re-estimation alternating with change-penalised Viterbi labelling.

    A round that would leave fewer than `keep` speakers is not taken.
    """
    for _ in range(params.refine_rounds):
        present = np.unique(labels)
        centroids = unit_rows(np.stack([vectors[labels == k].mean(axis=0) for k in present]))
        new = present[viterbi(vectors @ centroids.T, params.switch_penalty)]
        if np.array_equal(new, labels) or np.unique(new).size < min(keep, present.size):
            break
        labels = new
    return labels


def viterbi(scores: np.ndarray, penalty: float) -> np.ndarray:
    """The label path maximising summed scores minus `penalty` per change of label."""
    n, k = scores.shape
    total = scores[0].copy()
    back = np.zeros((n, k), dtype=int)
    for t in range(1, n):
        leader = int(np.argmax(total))
        switch = total[leader] - penalty
        stay = total >= switch
        back[t] = np.where(stay, np.arange(k), leader)
        total = np.where(stay, total, switch) + scores[t]
    path = np.empty(n, dtype=int)
    path[-1] = int(np.argmax(total))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _enforce_bounds(vectors: np.ndarray, labels: np.ndarray, bounds: CountBounds,
                    params: ClusteringParams) -> np.ndarray:
    """Merge clusters that are one voice and dissolve tiny ones, within the count bounds."""
    labels = labels.copy()
    while True:
        present, sizes = np.unique(labels, return_counts=True)
        if present.size <= max(bounds.low, 1):
            break
        centroids = unit_rows(np.stack([vectors[labels == k].mean(axis=0) for k in present]))
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -np.inf)
        rows, cols = np.triu_indices(present.size, k=1)
        order = [(int(rows[o]), int(cols[o])) for o in np.argsort(-similarity[rows, cols])]
        pair: tuple[int, int] | None = None
        if present.size > bounds.high:
            pair = order[0]
        elif not bounds.fixed:
            i, j = order[0]
            if similarity[i, j] >= params.merge_voice:
                pair = (i, j)
            small = int(np.argmin(sizes))
            if pair is None and sizes[small] < params.min_windows:
                pair = (small, int(np.argmax(similarity[small])))
        if pair is None:
            break
        source, target = pair if sizes[pair[0]] <= sizes[pair[1]] else pair[::-1]
        labels[labels == present[source]] = present[target]
        labels = refine(vectors, labels, params, keep=bounds.low)
    return labels


def _interleaved(labels: np.ndarray, a: int, b: int) -> bool:
    """Whether speakers a and b take turns: each comes back after the other spoke."""
    sequence = labels[(labels == a) | (labels == b)]
    runs = 1 + int(np.count_nonzero(sequence[1:] != sequence[:-1]))
    return runs >= 4


def relabel_by_appearance(labels: np.ndarray) -> np.ndarray:
    mapping: dict[int, int] = {}
    for label in labels.tolist():
        mapping.setdefault(label, len(mapping))
    return np.array([mapping[label] for label in labels.tolist()], dtype=int)


def _node_groups(n: int, max_nodes: int) -> list[np.ndarray]:
    size = -(-n // max_nodes)
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


def _kmeans(points: np.ndarray, k: int) -> np.ndarray:
    """k-means with a fixed seed and several starts, keeping the tightest."""
    if k <= 1:
        return np.zeros(points.shape[0], dtype=int)
    rng = np.random.default_rng(0)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(8):
        with warnings.catch_warnings():
            # An empty cluster in one start is harmless: the tightest start wins.
            warnings.simplefilter("ignore", UserWarning)
            centroids, labels = kmeans2(points, k, minit="++", seed=rng, iter=30)
        inertia = float(np.sum((points - centroids[labels]) ** 2))
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    assert best is not None
    return best[1]
