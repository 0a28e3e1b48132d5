"""Image-text retrieval the way ALBEF scores it: ITC similarity picks the top-k candidates,
then ITM re-ranks them. With ITC off, ITM scores every pair; with ITM off, ITC scores alone.

ITM scores are logit margins (``ITM.score``), unbounded reals; every row's candidates rank above
all its non-candidates, which keep their ITC order below them (``_rerank``).

Recall@K is in percent. Text->image: the caption's own image is in the top K. Image->text: any
of the image's captions is in the top K.

Ties neither help nor hurt a query: its R@K is the expectation under a uniformly random order of
tied items (ALBEF's ``itm_eval`` takes whatever order ``argsort`` gives). With s the query's best
relevant score, g the irrelevant items scoring above s, b the irrelevant and a (>= 1) the relevant
items scoring exactly s, the first relevant item lands at 0-based rank g + X, where X counts the
tied irrelevant items drawn before the first tied relevant one: P(X >= j) = C(b, j) / C(a+b, j).
So R@K = P(X < m) = 1 - C(b, m) / C(a+b, m) with m = K - g (0 when m <= 0, 1 when m > b).
A query with no relevant item has no rank: ``recall_at_k`` raises ValueError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.metric_names import RECALL_KS
from trainer.model.pretrainer import Pretrainer


@dataclass
class RetrievalResult:
    metrics: dict[str, float]
    protocol: str
    """"itc+itm_rerank@k", "itm_all_pairs", "itc", or "itc_untrained" (neither ITC nor ITM
    trained: the untrained projections score, so the numbers sit near chance)."""


def protocol_for(pretrainer: Pretrainer, k: int) -> str:
    has_itc, has_itm = "itc" in pretrainer.objectives, "itm" in pretrainer.objectives
    if has_itc and has_itm:
        return f"itc+itm_rerank@{k}"
    if has_itm:
        return "itm_all_pairs"
    return "itc" if has_itc else "itc_untrained"


def _batched(fn, n: int, size: int, device: torch.device) -> list[Tensor]:  # noqa: ANN001
    return [fn(torch.arange(i, min(n, i + size), device=device)) for i in range(0, n, size)]


def recall_at_k(scores: Tensor, relevant: Tensor) -> dict[int, float]:
    """Rows are queries; ``relevant`` marks the right answers. Expected R@K (percent) under a
    uniformly random order of tied scores (module docstring), so ties neither help nor hurt."""
    has_relevant = relevant.any(dim=1)
    if not bool(has_relevant.all()):
        missing = (~has_relevant).nonzero(as_tuple=True)[0][:5].tolist()
        raise ValueError(f"recall_at_k: query row(s) {missing} have no relevant item")
    best = scores.masked_fill(~relevant, float("-inf")).max(dim=1, keepdim=True).values
    tied = scores == best
    g = ((scores > best) & ~relevant).sum(dim=1)  # relevant items never score above best
    b = (tied & ~relevant).sum(dim=1).double()
    a = (tied & relevant).sum(dim=1).double()
    out: dict[int, float] = {}
    for k in RECALL_KS:
        m = k - g  # slots left for the tied block within the top k
        # C(b, m) / C(a+b, m) = prod_{i<m} (b - i) / (a + b - i): all first m tied draws miss
        all_miss = torch.ones_like(b)
        for i in range(k):
            factor = ((b - i) / (a + b - i)).clamp(min=0.0)
            all_miss = torch.where(i < m, all_miss * factor, all_miss)
        hit = torch.where(m <= 0, torch.zeros_like(b), 1.0 - all_miss)
        out[k] = float(hit.mean() * 100)
    return out


@torch.no_grad()
def evaluate_retrieval(
    pretrainer: Pretrainer,
    load_images,  # noqa: ANN001 - Callable[[LongTensor], FloatTensor]
    num_images: int,
    input_ids: Tensor,
    attention_mask: Tensor,
    caption_image: Tensor,
    *,
    rerank_k: int,
    batch_size: int,
    device: torch.device,
) -> RetrievalResult:
    """Score every caption against every image of a split and report R@1/5/10 both ways."""
    was_training = pretrainer.training
    pretrainer.eval()
    model = pretrainer.model
    images = torch.cat(_batched(
        lambda i: model.encode_image(load_images(i.cpu()).to(device)), num_images, batch_size,
        device))
    length = int(attention_mask.sum(dim=1).max())  # drop padding no caption uses
    ids, mask = input_ids[:, :length].to(device), attention_mask[:, :length].to(device)
    texts = torch.cat(_batched(lambda i: model.encode_text(ids[i], mask[i]), len(ids),
                               batch_size, device))
    k = min(rerank_k, num_images, len(ids))
    protocol = protocol_for(pretrainer, k)
    m, n = len(ids), num_images

    def itm(text_idx: Tensor, image_idx: Tensor) -> Tensor:
        out = _batched(
            lambda i: pretrainer.itm_scores(texts[text_idx[i]], mask[text_idx[i]],
                                            images[image_idx[i]]),
            len(text_idx), batch_size, device)
        return torch.cat(out).float()

    if protocol == "itm_all_pairs":
        t_idx = torch.arange(m, device=device).repeat_interleave(n)
        i_idx = torch.arange(n, device=device).repeat(m)
        t2i = itm(t_idx, i_idx).view(m, n)
        i2t = t2i.t()
    else:
        sim = model.text_feat(texts, mask).float() @ model.image_feat(images).float().t()  # [M,N]
        t2i, i2t = sim, sim.t().contiguous()
        if protocol.startswith("itc+itm"):
            t2i = _rerank(sim, k, lambda r, c: itm(r, c))
            i2t = _rerank(sim.t().contiguous(), k, lambda r, c: itm(c, r))
    relevant = caption_image.to(device)[:, None] == torch.arange(n, device=device)[None, :]
    r_t2i = recall_at_k(t2i, relevant)
    r_i2t = recall_at_k(i2t, relevant.t())
    metrics = {f"t2i_r{k_}": v for k_, v in r_t2i.items()}
    metrics |= {f"i2t_r{k_}": v for k_, v in r_i2t.items()}
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    pretrainer.train(was_training)
    return RetrievalResult(metrics, protocol)


def _rerank(sim: Tensor, k: int, score) -> Tensor:  # noqa: ANN001
    """Replace each row's top-k ITC candidates by their ITM score (any real, e.g. a logit
    margin); the rest keep ITC order strictly below that row's lowest candidate.

    A non-candidate scores ``lowest - 1 - (row's top ITC - its ITC)``: below every candidate
    whatever the scale of ITM scores (the old ``cosine - 10`` assumed them in [0, 1]).
    """
    top = sim.topk(k, dim=1).indices
    rows = torch.arange(sim.shape[0], device=sim.device).repeat_interleave(k)
    cols = top.reshape(-1)
    cand = score(rows, cols).to(sim.dtype).view(-1, k)
    lowest = cand.min(dim=1, keepdim=True).values
    out = lowest - 1.0 - (sim.max(dim=1, keepdim=True).values - sim)
    out[rows, cols] = cand.reshape(-1)
    return out
