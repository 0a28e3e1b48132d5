"""Image-text retrieval the way ALBEF scores it: ITC similarity picks the top-k candidates,
then ITM re-ranks them. With ITC off, ITM scores every pair; with ITM off, ITC scores alone.

Recall@K is in percent. Text->image: the caption's own image is in the top K. Image->text: any
of the image's captions is in the top K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.model.pretrainer import Pretrainer

RECALL_KS = (1, 5, 10)

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
    """Rows are queries; ``relevant`` marks the right answers. Ties count against the query."""
    best_right = scores.masked_fill(~relevant, float("-inf")).max(dim=1).values
    rank = (scores > best_right[:, None]).sum(dim=1) + (
        (scores == best_right[:, None]) & ~relevant
    ).sum(dim=1)
    return {k: float((rank < k).float().mean() * 100) for k in RECALL_KS}


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
    """Replace each row's top-k ITC candidates by their ITM score; the rest keep ITC order
    below every candidate (cosine - 10 < 0 <= ITM probability)."""
    top = sim.topk(k, dim=1).indices
    rows = torch.arange(sim.shape[0], device=sim.device).repeat_interleave(k)
    cols = top.reshape(-1)
    out = sim - 10.0
    out[rows, cols] = score(rows, cols)
    return out
