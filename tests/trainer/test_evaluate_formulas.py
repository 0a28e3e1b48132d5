"""Retrieval scoring against references written from the formulas, not from the code.

The reference for R@K is ALBEF's ``itm_eval``: sort each query's scores in descending order
(``np.argsort(score)[::-1]``), take the best position of any relevant item, and count the
queries whose position is below K. Ties have no order there, so the tie rule (expected R@K
under a uniformly random tie order) is checked against that same rule averaged over every
possible tie order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from tests.trainer.helpers import VOCAB, tiny
from trainer.evaluate import RECALL_KS, _rerank, recall_at_k
from trainer.model.pretrainer import Pretrainer
from trainer.objectives.itm import ITM

# ---- references --------------------------------------------------------------------------


def albef_recall(scores: np.ndarray, relevant: np.ndarray) -> dict[int, float]:
    """ALBEF ``itm_eval``: rank = first position of any relevant item in a descending argsort."""
    ranks = []
    for row, rel in zip(scores, relevant, strict=True):
        inds = np.argsort(row)[::-1]
        ranks.append(min(np.where(inds == j)[0][0] for j in np.flatnonzero(rel)))
    ranks_arr = np.array(ranks)
    return {k: 100.0 * len(np.where(ranks_arr < k)[0]) / len(ranks_arr) for k in RECALL_KS}


def brute_force_tie_average(scores: np.ndarray, relevant: np.ndarray) -> dict[int, float]:
    """ALBEF's rule averaged over every order of the items: a stable sort by descending score
    of each permutation breaks ties by that permutation, each tie order equally often."""
    n_rows, n_cols = scores.shape
    hits = dict.fromkeys(RECALL_KS, 0.0)
    perms = list(itertools.permutations(range(n_cols)))
    for row, rel in zip(scores, relevant, strict=True):
        for perm in perms:
            order = sorted(perm, key=lambda j: -row[j])  # stable: ties keep perm order
            rank = min(pos for pos, j in enumerate(order) if rel[j])
            for k in RECALL_KS:
                hits[k] += rank < k
    return {k: 100.0 * v / (n_rows * len(perms)) for k, v in hits.items()}


def _ours(scores: np.ndarray, relevant: np.ndarray) -> dict[int, float]:
    return recall_at_k(torch.as_tensor(scores), torch.as_tensor(relevant))


def _relevance(n_queries: int, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Every query has at least one relevant item, some have several."""
    rel = rng.random((n_queries, n_items)) < 0.2
    rel[np.arange(n_queries), rng.integers(0, n_items, n_queries)] = True
    return rel


# ---- R@K ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_recall_matches_albef_itm_eval_on_untied_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_captions, n_images = 60, 25
    caption_image = np.concatenate([np.arange(n_images), rng.integers(0, n_images, 35)])
    t2i_rel = caption_image[:, None] == np.arange(n_images)[None, :]
    scores = rng.standard_normal((n_captions, n_images)).astype(np.float32)
    assert len(np.unique(scores)) == scores.size  # really untied
    for s, rel in ((scores, t2i_rel), (scores.T.copy(), t2i_rel.T.copy())):
        got, want = _ours(s, rel), albef_recall(s, rel)
        assert got == pytest.approx(want, abs=1e-4)  # same ranks; float32 percentages differ


@pytest.mark.parametrize("seed", range(12))
def test_recall_with_ties_is_albef_averaged_over_every_tie_order(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_queries, n_items = (4, 5) if seed % 2 else (3, 6)
    scores = rng.integers(0, 3, (n_queries, n_items)).astype(np.float32)  # many ties
    rel = _relevance(n_queries, n_items, rng)
    assert _ours(scores, rel) == pytest.approx(brute_force_tie_average(scores, rel), abs=1e-9)


def test_recall_with_ties_matches_random_tie_breaking_on_a_wider_matrix() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, (20, 30)).astype(np.float32)
    rel = _relevance(20, 30, rng)
    draws = 1500
    mean = dict.fromkeys(RECALL_KS, 0.0)
    for _ in range(draws):  # ALBEF's argsort after a random shuffle of the columns
        perm = rng.permutation(30)
        # argsort is not stable for equal keys; break ties by the shuffled position explicitly
        keyed = scores[:, perm] - 1e-3 * np.arange(30)[None, :] / 30
        got = albef_recall(keyed, rel[:, perm])
        for k in RECALL_KS:
            mean[k] += got[k] / draws
    assert _ours(scores, rel) == pytest.approx(mean, abs=1.0)


def test_all_scores_equal_one_relevant_of_n() -> None:
    n = 12
    rel = np.zeros((1, n), dtype=bool)
    rel[0, 5] = True
    got = _ours(np.zeros((1, n), dtype=np.float32), rel)
    assert got == pytest.approx({1: 100 / 12, 5: 500 / 12, 10: 1000 / 12})


def test_image_with_two_of_four_captions_all_tied_has_r1_of_50() -> None:
    rel = np.array([[True, False, True, False]])
    got = _ours(np.full((1, 4), 0.3, dtype=np.float32), rel)
    assert got == pytest.approx({1: 50.0, 5: 100.0, 10: 100.0})


def test_two_relevant_tied_with_ten_irrelevant() -> None:
    # top 5 of 12 in random order misses both relevant items with chance (10/12)(9/11)...:
    # equivalently both land among the last 7 positions: (7/12)(6/11)
    rel = np.zeros((1, 12), dtype=bool)
    rel[0, [0, 1]] = True
    got = _ours(np.ones((1, 12), dtype=np.float32), rel)
    assert got[1] == pytest.approx(100 * 2 / 12)
    assert got[5] == pytest.approx(100 * (1 - (7 / 12) * (6 / 11)))
    assert got[10] == pytest.approx(100 * (1 - (2 / 12) * (1 / 11)))


def test_ties_behind_strictly_better_items() -> None:
    # 4 irrelevant items above, then 1 relevant tied with 3 irrelevant: R@5 is 1/4, R@10 sure
    row = np.array([[9, 9, 8, 7, 5, 5, 5, 5, 1, 0, 0, 0]], dtype=np.float32)
    rel = np.zeros_like(row, dtype=bool)
    rel[0, 6] = True
    assert _ours(row, rel) == pytest.approx({1: 0.0, 5: 25.0, 10: 100.0})


def test_query_without_a_relevant_item_is_an_error() -> None:
    rel = np.array([[True, False], [False, False]])
    with pytest.raises(ValueError, match=r"\[1\]"):
        _ours(np.zeros((2, 2), dtype=np.float32), rel)


# ---- ITM score: the logit margin, which never saturates ------------------------------------


@pytest.fixture(scope="module")
def itm() -> ITM:
    torch.manual_seed(0)
    head = Pretrainer(tiny(), VOCAB).objectives["itm"]
    with torch.no_grad():  # logits = (0, x[0]): the margin is the first input coordinate
        head.head.weight.zero_()
        head.head.bias.zero_()
        head.head.weight[1, 0] = 1.0
    return head.requires_grad_(False)


def _cls(margins: list[float], dim: int) -> torch.Tensor:
    x = torch.zeros(len(margins), dim)
    x[:, 0] = torch.tensor(margins)
    return x


def test_itm_score_ranks_confident_pairs_by_margin(itm: ITM) -> None:
    margins = [17.0, 30.0, 18.5, 25.0, 21.0]
    probs = torch.softmax(torch.stack([torch.zeros(5), torch.tensor(margins)], 1), 1)[:, 1]
    assert torch.all(probs == 1.0)  # the premise: float32 probabilities tie them all at 1.0
    scores = itm.score(_cls(margins, itm.head.in_features))
    assert scores.tolist() == pytest.approx(margins)
    assert torch.argsort(scores, descending=True).tolist() == [1, 3, 4, 2, 0]


def test_confident_correct_itm_reranking_gets_full_recall(itm: ITM) -> None:
    # 4 captions x 6 images; ITC puts a wrong image first for every caption, the right one
    # second; ITM is confident about both candidates and right about which matches
    n_q, n_i, k = 4, 6, 3
    truth = torch.tensor([2, 0, 5, 3])
    sim = torch.linspace(-0.5, 0.5, n_q * n_i).view(n_q, n_i)
    wrong = (truth + 1) % n_i
    sim[torch.arange(n_q), wrong] = 0.9
    sim[torch.arange(n_q), truth] = 0.8

    def score(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        margins = (20.0 + 10.0 * (cols == truth[rows]).float() + 0.1 * cols).tolist()
        return itm.score(_cls(margins, itm.head.in_features))

    relevant = truth[:, None] == torch.arange(n_i)[None, :]
    assert recall_at_k(sim, relevant)[1] == 0.0  # ITC alone is wrong everywhere
    assert recall_at_k(_rerank(sim, k, score), relevant)[1] == 100.0


# ---- re-ranking with unbounded ITM scores --------------------------------------------------


def _check_rerank(sim: torch.Tensor, k: int, score: Callable) -> torch.Tensor:
    out = _rerank(sim, k, score)
    for r in range(sim.shape[0]):
        cand = set(torch.topk(sim[r], k).indices.tolist())
        rest = [c for c in range(sim.shape[1]) if c not in cand]
        cand_scores = [float(score(torch.tensor([r]), torch.tensor([c]))) for c in cand]
        assert sorted(out[r, list(cand)].tolist()) == pytest.approx(sorted(cand_scores))
        assert max(out[r, rest].tolist()) < min(cand_scores)
        by_itc = sorted(rest, key=lambda c: -float(sim[r, c]))
        by_out = sorted(rest, key=lambda c: -float(out[r, c]))
        assert by_itc == by_out
    return out


@pytest.mark.parametrize("offset", [-1e4, -50.0, -3.0, 0.0, 0.5, 40.0, 1e4])
def test_rerank_puts_candidates_first_for_any_score_scale(offset: float) -> None:
    g = torch.Generator().manual_seed(3)
    sim = torch.nn.functional.normalize(torch.randn(5, 7, generator=g), dim=1)
    sim = sim @ torch.nn.functional.normalize(torch.randn(7, 7, generator=g), dim=1).t()

    def score(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return offset + (rows * 7 + cols).float().sin() * 5

    _check_rerank(sim, 3, score)


def test_negative_margins_still_outrank_non_candidates_end_to_end() -> None:
    # ITM is unsure about every candidate (negative margins) but ranks the right one first
    sim = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.2, 0.7, 0.9, 0.3]])
    truth = torch.tensor([1, 1])

    def score(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return torch.where(cols == truth[rows], -30.0, -35.0)

    out = _check_rerank(sim, 2, score)
    relevant = truth[:, None] == torch.arange(4)[None, :]
    assert recall_at_k(out, relevant)[1] == 100.0


def test_rerank_keeps_margins_of_a_saturated_head(itm: ITM) -> None:
    sim = torch.tensor([[0.5, 0.4, 0.3, 0.2, 0.1]])
    margins = torch.tensor([17.0, 19.0, 23.0, 0.0, 0.0])

    def score(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return itm.score(_cls(margins[cols].tolist(), itm.head.in_features))

    out = _check_rerank(sim, 3, score)
    assert torch.argsort(out[0], descending=True).tolist()[:3] == [2, 1, 0]
    assert not math.isclose(float(out[0, 1]), float(out[0, 2]))
