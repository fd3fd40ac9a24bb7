"""CLIP (Radford et al., 2021) as SLIP trains it, and FLIP (Li et al., 2023).

CLIP (CLIP paper Sec. 2.3-2.5 and Fig. 3; facebookresearch/SLIP `models.py` CLIP,
`losses.py` CLIPLoss): image tower = the visrep backbone (pooled features, what is exported)
→ image_projection (V × E, no bias); text tower = `TextTransformer` pooled at EOT →
text_projection (W × E, no bias); learnable logit scale, init ln(1/0.07), clamped in place to
[0, ln 100] after each optimizer step (`on_step_end`, as SLIP's `main.py`; not in the
forward). Loss: `clip_loss`, gather without gradient. `text_tower="minilm"` replaces the
text tower with the pretrained all-MiniLM-L6-v2 (384-d sentence embedding → text_projection),
frozen with `lock_text` (LiT; `visrep.backbones.text_pretrained`); it reads the batch's raw
`captions` when present, else decodes the CLIP token ids.

FLIP (FLIP paper; facebookresearch/flip `models_flip.py`): the same model; in training the
image tower encodes only a random `1 - mask_ratio` of the patch tokens (MAE's argsort
masking, `parts.masking.random_masking`, injectable `noise`; position embeddings added before
masking; no decoder, no reconstruction). Evaluation and `mask_ratio=0` (the paper's
unmasked-tuning phase) use every token. Differences from the official JAX FLIP, chosen so
the exported backbone computes the trained features: the image feature is the backbone's own
pooling (cls token by default; FLIP averages all tokens including cls), the text tower is
CLIP's causal one (FLIP: BERT-style), and the logit scale is clamped after the step as in
SLIP (FLIP clips it in the forward).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.data.tokenizer import trim_padding
from visrep.method_configs import CLIPConfig, FLIPConfig
from visrep.parts.losses import clip_loss
from visrep.parts.masking import random_masking


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.text = build_text_tower(cfg)
        v, w, e = backbone.feature_dim, self.text.width, cfg.embed_dim
        self.image_projection = nn.Parameter(torch.randn(v, e) * v**-0.5)  # std V^-½
        self.text_projection = nn.Parameter(torch.randn(w, e) * w**-0.5)  # std W^-½
        self.logit_scale = nn.Parameter(torch.tensor(cfg.logit_scale_init))

    def image_features(self, images: Tensor, noise: Tensor | None = None) -> Tensor:
        """Pooled image-tower features [N, V] (FLIP overrides this to mask tokens)."""
        return self.backbone(images)

    def encode_image(self, images: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.image_features(images, noise) @ self.image_projection  # [N, E]

    def encode_text(self, tokens: Tensor | list[str]) -> Tensor:
        if self.cfg.text_tower != "clip":  # its own tokenizer: strings, or CLIP ids decoded
            return self.text(tokens) @ self.text_projection  # [N, E]
        return self.text(trim_padding(tokens)) @ self.text_projection  # [N, E]

    def clip_outputs(self, batch: dict, noise: Tensor | None = None) -> dict[str, Tensor]:
        tokens = batch.get("tokens")
        if tokens is None:
            raise ValueError(
                f"{type(self).__name__} trains on image-text pairs: set data.dataset to "
                "WebDataset shards, a CSV/JSONL of image_path,caption, or use "
                "data.captions with Fashion-MNIST (see visrep.data.pairs)"
            )
        image = self.encode_image(batch["images"], noise)  # [N, E]
        captions = batch.get("captions") if self.cfg.text_tower != "clip" else None
        text = self.encode_text(tokens if captions is None else captions)  # [N, E]
        loss = clip_loss(image, text, self.logit_scale)
        with torch.no_grad():  # image→text accuracy within the local batch (SLIP's clip_acc)
            acc = (image @ text.T).argmax(1).eq(torch.arange(len(image), device=image.device))
        return {"loss": loss, "clip_loss": loss.detach(), "clip_acc": acc.float().mean(),
                "logit_scale": self.logit_scale.detach().exp()}  # fmt: skip

    def forward(self, batch: dict, noise: Tensor | None = None) -> dict[str, Tensor]:
        return self.clip_outputs(batch, noise)

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        """In-place clamp of the logit scale to [0, ln 100] after the step, as SLIP's `main.py`
        (CLIP paper Sec. 2.5: the logits are scaled by at most 100)."""
        self.logit_scale.clamp_(0, self.cfg.logit_scale_max)


def build_text_tower(cfg: CLIPConfig) -> nn.Module:
    """CLIP's causal transformer (from scratch) or a pretrained tower, locked or not."""
    if cfg.text_tower == "clip":
        if cfg.lock_text:
            raise ValueError(
                "method.lock_text=true locks a pretrained text tower: set "
                "method.text_tower=minilm (a from-scratch tower would stay random)"
            )
        from visrep.backbones.text import TextTransformer  # imports open_clip (~1 s)

        return TextTransformer(cfg.vocab_size, cfg.context_length, cfg.text_width,
                               cfg.text_layers, cfg.text_heads)  # fmt: skip
    from visrep.backbones.text_pretrained import PRETRAINED_TEXT_TOWERS, PretrainedTextTower

    if cfg.text_tower not in PRETRAINED_TEXT_TOWERS:
        raise ValueError(f"method.text_tower must be 'clip' or one of {PRETRAINED_TEXT_TOWERS}, "
                         f"got {cfg.text_tower!r}")  # fmt: skip
    return PretrainedTextTower(cfg.text_tower, locked=cfg.lock_text)


class FLIP(CLIP):
    def __init__(self, cfg: FLIPConfig, backbone: nn.Module) -> None:
        if not hasattr(backbone, "encode"):
            raise ValueError("FLIP masks image tokens and needs a ViT backbone (vit_*)")
        super().__init__(cfg, backbone)

    def image_features(self, images: Tensor, noise: Tensor | None = None) -> Tensor:
        if not self.training or self.cfg.mask_ratio == 0:
            return self.backbone(images)  # every token: evaluation, unmasked tuning
        vit = self.backbone
        masking = random_masking(images.shape[0], vit.num_patches, self.cfg.mask_ratio,
                                 noise=noise, device=images.device)  # fmt: skip
        tokens = vit.encode(images, masking.ids_keep)  # [N, 1+L_keep, D]
        return vit.pool(tokens)  # [N, D]
