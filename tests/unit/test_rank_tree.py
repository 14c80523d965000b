"""Candidate prefix trees for rank scoring (models/rank_tree.py)."""

from __future__ import annotations

import random

from flamingo_eval.models.rank_tree import tree_chunks


def _check(cands: list[list[int]], max_nodes: int) -> list:
    chunks = tree_chunks(cands, max_nodes)
    done = [c for ch in chunks for c in ch.candidates]
    assert sorted(done) == [i for i, x in enumerate(cands) if len(x) > 1]  # each multi-token candidate once
    for ch in chunks:
        prefix = []  # rebuild every node's prefix from its ancestors
        for tok, parent, depth in zip(ch.tokens, ch.parent, ch.depth):
            assert parent < len(prefix)
            prefix.append((prefix[parent] if parent >= 0 else ()) + (tok,))
            assert len(prefix[-1]) == depth
        assert len(set(prefix)) == len(prefix)  # distinct prefixes within a chunk
        terms: dict[int, list] = {}
        for row, node, target in zip(ch.rows, ch.nodes, ch.targets):
            terms.setdefault(ch.candidates[row], []).append((prefix[node], target))
        for c, got in terms.items():  # candidate c scores x[d] after exactly its prefix x[:d], d = 1..L-1
            x = cands[c]
            assert got == [(tuple(x[:d]), x[d]) for d in range(1, len(x))]
        anc = ch.ancestor_mask()
        for i in range(len(prefix)):
            for j in range(len(prefix)):
                assert bool(anc[i, j]) == (prefix[i][: len(prefix[j])] == prefix[j])
    return chunks


def test_shared_prefixes_become_one_node():
    cands = [[1, 2, 3], [1, 2, 4], [1, 5], [7], [1, 2, 3, 9]]
    (ch,) = _check(cands, 100)
    assert ch.tokens == [1, 2, 3]  # prefixes (1), (1, 2), (1, 2, 3): 3 nodes for 7 candidate tokens
    assert ch.parent == [-1, 0, 1] and 3 not in ch.candidates  # a one-token candidate needs no node


def test_chunks_respect_the_node_budget_and_stay_closed_under_ancestors():
    rng = random.Random(0)
    cands = [[rng.randrange(4) for _ in range(rng.randint(1, 6))] for _ in range(300)]
    for budget in (1, 3, 16, 10_000):
        chunks = _check(cands, budget)
        for ch in chunks:
            assert len(ch.tokens) <= max(budget, max(len(cands[c]) - 1 for c in ch.candidates))
    one = tree_chunks(cands, 10_000)
    assert len(one) == 1 and len(one[0].tokens) < sum(len(x) - 1 for x in cands if len(x) > 1)


def test_ancestor_mask_of_two_branches():
    (ch,) = tree_chunks([[5, 6, 7], [5, 8, 9]], 10)
    assert ch.tokens == [5, 6, 8] and ch.parent == [-1, 0, 0]  # (5), (5, 6), (5, 8)
    assert ch.ancestor_mask().tolist() == [[True, False, False], [True, True, False], [True, False, True]]
