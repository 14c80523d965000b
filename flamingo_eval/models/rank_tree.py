"""Candidate token trees for rank scoring: a prefix shared by several candidates is run once.

Scoring candidate ``x`` (tokens x_0..x_{L-1}) after a context needs the LM's next-token distribution after
the context (for x_0) and after each proper prefix x_0..x_{d-1}, d = 1..L-1. Candidates that share a prefix
("great white shark" / "great grey owl", "tiger" / "tiger shark" / "tiger cat") share those distributions,
so the distinct prefixes form a tree: one *node* per distinct proper prefix, fed with the prefix's last
token. All nodes of a chunk run as one row whose attention mask lets each node see the context and its own
ancestors only, at position ``context length + depth - 1`` — exactly the keys and positions the node has in
the candidate's own sequence. For the 1000 ImageNet class names this is ~1500 nodes instead of ~2000
candidate tokens plus padding (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TreeChunk:
    """Nodes of one forward (closed under ancestors) and the (candidate, node, next token) scores they give."""

    tokens: list[int] = field(default_factory=list)
    """Input token of each node (the last token of its prefix)."""
    parent: list[int] = field(default_factory=list)
    """Local index of each node's parent, -1 for a depth-1 node; a parent precedes its children."""
    depth: list[int] = field(default_factory=list)
    """1-based prefix length of each node."""
    candidates: list[int] = field(default_factory=list)
    """Indices (into the candidate list) of the candidates this chunk completes."""
    rows: list[int] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    """Score terms: candidate ``candidates[rows[j]]`` gets log p(targets[j] | node nodes[j])."""

    def ancestor_mask(self) -> Tensor:
        """(N, N) bool: True where node i may attend to node j (j is i or an ancestor of i)."""
        n = len(self.tokens)
        anc = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(self.parent):
            if p >= 0:
                anc[i] = anc[p]
            anc[i, i] = True
        return anc


def tree_chunks(cands: list[list[int]], max_nodes: int) -> list[TreeChunk]:
    """Group candidates (token id lists) into chunks of at most ``max_nodes`` distinct prefixes.

    Candidates are visited in token order so that those sharing prefixes land in the same chunk; a chunk
    holds every prefix of its candidates (a prefix split across two chunks is run in both). A candidate
    with more prefixes than ``max_nodes`` gets a chunk of its own. One-token candidates need no node
    (their score comes from the context's last position) and appear in no chunk.
    """
    order = sorted((i for i, x in enumerate(cands) if len(x) > 1), key=lambda i: (cands[i], i))
    chunks: list[TreeChunk] = []
    cur, index = TreeChunk(), dict[tuple[int, ...], int]()
    for i in order:
        x = cands[i]
        new = sum(1 for d in range(1, len(x)) if tuple(x[:d]) not in index)
        if cur.candidates and len(cur.tokens) + new > max_nodes:
            chunks.append(cur)
            cur, index = TreeChunk(), dict[tuple[int, ...], int]()
        parent = -1
        for d in range(1, len(x)):
            key = tuple(x[:d])
            node = index.get(key)
            if node is None:
                node = index[key] = len(cur.tokens)
                cur.tokens.append(x[d - 1])
                cur.parent.append(parent)
                cur.depth.append(d)
            cur.rows.append(len(cur.candidates))
            cur.nodes.append(node)
            cur.targets.append(x[d])
            parent = node
        cur.candidates.append(i)
    if cur.candidates:
        chunks.append(cur)
    return chunks
