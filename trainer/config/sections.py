"""The sections of a trial's config other than its objectives: data, model, init, optim,
schedule, eval, runtime. Plain pydantic, no torch: the controller validates specs with them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from trainer.config.base import PATH_MAX, SEED_BOUND, PathStr, Section
from trainer.config.downstream import DownstreamConfig

ShardList = Annotated[str, Field(min_length=1, max_length=4 * PATH_MAX)]
"""A brace pattern of shard paths or s3:// URIs (``trainer.config.shards.expand``)."""

__all__ = ["PATH_MAX", "SEED_BOUND", "PathStr", "Section", "ShardList"]


class DataConfig(Section):
    dataset: Literal["shapes", "coco", "flickr30k", "imagefolder", "webdataset"] = "shapes"
    root: PathStr | None = Field(
        default=None,
        description="shapes: cache directory (default .ablate/data); real data: folder of images "
        "and annotations",
    )
    annotations: PathStr | None = Field(
        default=None, description="Karpathy-split JSON (coco/flickr30k) relative to root"
    )
    image_size: int = Field(default=32, ge=16, le=1024)
    num_train_images: int = Field(default=2000, ge=1)
    num_val_images: int = Field(default=100, ge=1)
    num_test_images: int = Field(default=200, ge=1)
    captions_per_image: int = Field(default=5, ge=1)
    min_objects: int = Field(default=1, ge=1)
    max_objects: int = Field(default=3, ge=1)
    caption_noise: float = Field(default=0.0, ge=0.0, le=1.0)
    benchmark_seed: int = Field(
        default=0, ge=0, lt=SEED_BOUND,
        description="generates the benchmark; independent of the training seed",
    )
    max_text_len: int = Field(default=30, ge=4)
    vocab_size: int = Field(default=1000, ge=50, description="WordPiece vocabulary to train")
    tokenizer_path: PathStr | None = None
    batch_size: int = Field(default=32, ge=2)
    train_shards: ShardList | None = Field(
        default=None, description="webdataset: the training shards, a brace pattern such as "
        "/data/cc3m/{00000..00127}.tar or s3://bucket/cc3m/{00000..00127}.tar ('::' joins "
        "several); .jpg/.png + .txt or .json caption per sample, as img2dataset writes them",
    )
    val_shards: ShardList | None = Field(
        default=None, description="webdataset: the validation shards (never shuffled)")
    test_shards: ShardList | None = Field(
        default=None, description="webdataset: the test shards (never shuffled)")
    num_workers: int = Field(
        default=0, ge=0, le=64, description="DataLoader worker processes decoding and "
        "augmenting images (0: in the training process); never changes a result")
    prefetch_factor: int = Field(
        default=2, ge=1, le=64, description="batches each worker prepares ahead")
    augment: bool = Field(
        default=False, description="ALBEF's train-time augmentation: RandomResizedCrop "
        "(scale 0.5-1), horizontal flip (swapping 'left' and 'right' in the caption) and "
        "RandAugment(2, 7); deterministic per (seed, epoch, sample)",
    )
    max_bad_fraction: float = Field(
        default=0.01, ge=0.0, le=1.0, description="share of a split's samples that may be "
        "skipped as unreadable (corrupt image, empty caption, broken tar member) before the "
        "trial fails with an error",
    )

    @model_validator(mode="after")
    def _objects_range(self) -> DataConfig:
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects: must not exceed max_objects")
        return self

    @model_validator(mode="after")
    def _shards_named(self) -> DataConfig:
        if self.dataset == "webdataset":
            for name in ("train_shards", "val_shards", "test_shards"):
                if not getattr(self, name):
                    raise ValueError(f"{name}: required for dataset 'webdataset' (a brace "
                                     "pattern of tar shards)")
        return self


class VisionConfig(Section):
    patch_size: int = Field(default=8, ge=1)
    hidden_size: int = Field(default=64, ge=8)
    num_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=256, ge=8)
    pretrained: PathStr | None = Field(
        default=None, description="local transformers ViT checkpoint")
    pooling: Literal["cls", "mean"] = Field(
        default="cls",
        description="ITC feature: the [CLS] state (ALBEF) or the mean of the patch states",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> VisionConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size: must be divisible by num_heads")
        return self


class TextConfig(Section):
    hidden_size: int = Field(default=64, ge=8)
    num_text_layers: int = Field(default=2, ge=1)
    num_fusion_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=256, ge=8)
    pretrained: PathStr | None = Field(
        default=None, description="local transformers BERT checkpoint")
    pooling: Literal["cls", "mean"] = Field(
        default="cls",
        description="ITC feature: the [CLS] state (ALBEF) or the mean of the token states",
    )
    fusion_readout: Literal["cls", "mean"] = Field(
        default="cls",
        description="what the heads on the fusion encoder (ITM, VILLA's ITM) read: the fused "
        "[CLS] state (ALBEF) or the mean of the fused token states",
    )
    cross_attention_init: Literal["bert", "lecun"] = Field(
        default="bert",
        description="the fusion's cross-attention weights: BERT's N(0, 0.02) (ALBEF), or "
        "N(0, 1/fan_in) (LeCun), under which the image moves the fused states from step 0. "
        "ALBEF only: MoME has no cross-attention",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> TextConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size: must be divisible by num_heads")
        return self


class MoMEConfig(Section):
    """VLMo's multiway transformer (``model.arch: mome``): ``num_layers`` blocks of shared
    self-attention with vision and language FFN experts; the top ``num_vl_layers`` also hold a
    vision-language expert used in fusion mode. Patch size comes from ``model.vision``."""

    hidden_size: int = Field(default=64, ge=8)
    num_layers: int = Field(default=4, ge=1)
    num_vl_layers: int = Field(default=2, ge=1, description="top layers with the VL-FFN expert")
    num_heads: int = Field(default=2, ge=1)
    intermediate_size: int = Field(default=256, ge=8)

    @model_validator(mode="after")
    def _shape(self) -> MoMEConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size: must be divisible by num_heads")
        if self.num_vl_layers > self.num_layers:
            raise ValueError("num_vl_layers: must not exceed num_layers")
        return self


class ModelConfig(Section):
    arch: Literal["albef", "mome"] = "albef"
    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    mome: MoMEConfig = Field(
        default_factory=MoMEConfig, description="sizes of the multiway transformer (arch mome)"
    )
    embed_dim: int = Field(default=64, ge=2, description="ITC projection size")
    momentum: float = Field(default=0.995, ge=0.0, lt=1.0, description="EMA decay of the copies")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class InitConfig(Section):
    """Where the encoders start. ``warm_start``: from a unimodal pretraining stage on the
    benchmark's own training split (the image encoder classifies each patch's shape and colour,
    the text encoder does MLM on the captions), shared by every arm and seed of an experiment,
    the way ALBEF, VILLA and VLMo start from pretrained DeiT/BERT/BEiT. Computed once per
    content key (data + encoder shapes + this recipe + code) and cached beside the data."""

    warm_start: bool = False
    steps: int = Field(default=300, ge=1, description="warm-start optimizer steps")
    lr: float = Field(default=1e-3, gt=0.0, description="warm-start peak learning rate")
    batch_size: int = Field(default=64, ge=2, description="images and captions per step")
    seed: int = Field(default=0, ge=0, lt=SEED_BOUND,
                      description="the warm start's own seed (not the trial's)")
    fusion: bool = Field(
        default=False, description="the text stage's MLM also runs through the fusion layers "
        "(self-attention and feed-forward; cross-attention skipped and left fresh), so they "
        "start trained, as ALBEF's fusion starts from BERT's layers 6-11. ALBEF only: MoME's "
        "text stage already runs every block, and its VL experts start fresh, as in VLMo")


class OptimConfig(Section):
    lr: float = Field(default=1e-4, gt=0.0)
    weight_decay: float = Field(default=0.02, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0.0)
    grad_clip: float | None = Field(default=None, gt=0.0)
    accumulation_steps: int = Field(default=1, ge=1, description="micro-batches per step")


class ScheduleConfig(Section):
    steps: int = Field(default=300, ge=1, description="optimizer steps in the whole run")
    warmup_steps: int = Field(default=30, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    alpha_ramp_steps: int | None = Field(
        default=None, ge=0, description="distillation alpha ramp; None means one epoch"
    )
    budget_samples: int | None = Field(
        default=None, ge=1,
        description="match arms on samples seen, not steps: train on this many (image, caption) "
        "pairs, steps = budget_samples // (data.batch_size * optim.accumulation_steps); replaces "
        "steps",
    )
    budget_flops: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="match arms on compute: train until this many training FLOPs (forward and "
        "backward, measured on the trial's first batch), at most `steps`; an arm whose step costs "
        "more (hard negatives, VILLA) takes fewer steps",
    )


class EvalConfig(Section):
    every_steps: int | None = Field(default=None, ge=1, description="None: only at the end")
    split: Literal["val", "test"] = "test"
    rerank_k: int = Field(default=16, ge=1, description="ITC top-k candidates ITM re-ranks")
    batch_size: int = Field(default=256, ge=1)
    downstream: DownstreamConfig = Field(
        default_factory=DownstreamConfig,
        description="downstream tasks fine-tuned and scored after pretraining; not part of the "
        "trial's key (each evaluation is keyed on its own)")


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads")
    checkpoint_every: int = Field(default=100, ge=1)
    log_every: int = Field(default=10, ge=1)
    output_dir: PathStr = "runs"
