"""CiT — Curation in Training (Xu et al., ICCV 2023): CLIP whose data is re-curated from a
raw pool by its own text tower every `curate_every` steps (paper §3, Algorithm 1;
facebookresearch/CiT `engine.py`).

Outer loop (`curate`, run by the data source `visrep.data.cit_pool.CiTData` before the
first batch of each round): embed the task metadata (class names) and the captions of the
pool stream with the *current* text tower, keep pairs whose best cosine to the metadata
exceeds `threshold` (or the top `min_ratio` of a chunk when too few pass), until
`curate_every × batch` pairs are kept (`visrep.curation.cit`). Inner loop: the one training
loop, CLIP loss on those pairs. The text tower connects the two loops.

Towers. The paper trains a pre-trained text tower (SimCSE BERT, all layers) against a
*frozen* pre-trained image tower (MoCo v3 / AugReg / SWAG ViT, only its head and the
projections trained; `trainable_weight="head-all"`), so curation is meaningful from step 0.
visrep's product is the image backbone, so its default trains both towers from scratch
(CLIP's recipe, `method.freeze_image=False`). The first round then curates with a random
text tower, whose ranking follows word overlap with the metadata prompts rather than
meaning (measured in docs/curation.md); later rounds use the tower as trained so far.
`method.text_tower=minilm` (a pre-trained tower, raw strings) is the paper's text side.
`freeze_image=True` locks the image tower (backbone and image projection), the paper's
setting once the image tower starts from pre-trained weights; this method does not load
such weights itself.

Curation features: the text tower's pooled output *before* `text_projection`, as the
reference (`skip_text_projection=True`); `project=True` uses the projected embedding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.curation.cit import (
    PoolStream,
    curate_round,
    embed_captions,
    max_similarity,
    metadata_embedding,
)
from visrep.data.cit_pool import CiTData
from visrep.data.templates import FMNIST_CLASSNAMES, template_set
from visrep.data.tokenizer import trim_padding
from visrep.method_configs import CiTConfig
from visrep.methods.clip import CLIP


def metadata_entries(spec: str) -> list[str]:

    if spec.lower().replace("-", "_") in ("fashion_mnist", "fmnist"):
        return list(FMNIST_CLASSNAMES)
    p = Path(spec)
    if not p.is_file():
        raise FileNotFoundError(f"method.metadata={spec!r}: use fashion_mnist or a text file "
                                "with one class name per line")  # fmt: skip
    return [line.strip() for line in p.read_text().splitlines() if line.strip()]


def metadata_templates(spec: tuple[str, ...]) -> list[str]:
    """Templates with "{}" as given; a template-set name expands to that set."""

    return [t for item in spec for t in ([item] if "{}" in item else template_set(item))]


class CiT(CLIP):
    def __init__(self, cfg: CiTConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.entries = metadata_entries(cfg.metadata)
        self.templates = metadata_templates(cfg.metadata_templates)
        if cfg.freeze_image:
            for p in [*self.backbone.parameters(), self.image_projection]:
                p.requires_grad_(False)
        # curation state, saved in the state dict (`get_extra_state`): exact resume
        self.cit_round, self.cit_cursor = -1, 0
        self.cit_indices = torch.empty(0, dtype=torch.long)
        self.cit_stats: dict[str, float] = {}

    @property
    def raw_text(self) -> bool:
        """A pretrained text tower (`method.text_tower=minilm`) reads strings itself."""
        return getattr(self.cfg, "text_tower", "clip") != "clip"

    def curation_features(self, text: Tensor | list[str]) -> Tensor:
        """Text features used for curation [N, W] (pooled) or [N, E] (`project`)."""
        if self.raw_text:
            x = self.text(text)
        else:
            x = self.text(trim_padding(text))  # padding columns dropped (exact)
        return x @ self.text_projection if self.cfg.project else x

    @torch.no_grad()
    def curate(self, data, r: int, budget: int) -> None:
        """Round `r` over `data.pool` with the current text tower (Algorithm 1)."""
        if r != self.cit_round + 1 and not (r == 0 and self.cit_round == -1):
            raise RuntimeError(f"cannot curate round {r} after round {self.cit_round}: the "
                               "checkpoint does not match this step")  # fmt: skip

        was_training, device = self.training, next(self.text.parameters()).device
        self.eval()
        enc = self.curation_features
        raw = self.raw_text
        meta = metadata_embedding(enc, self.entries, self.templates, device, raw)
        pool = data.pool

        def scores_of(idx: Tensor) -> Tensor:
            caps = [pool.captions[i] for i in idx.tolist()]
            return max_similarity(embed_captions(enc, caps, len(caps), device, raw=raw), meta)

        chunk = self.cfg.scan_chunk or 2 * data.b
        res = curate_round(scores_of, PoolStream(len(pool), data.seed), self.cit_cursor,
                           budget, chunk, self.cfg.threshold, self.cfg.min_ratio)  # fmt: skip
        self.train(was_training)
        self.cit_round, self.cit_cursor, self.cit_indices = r, res.cursor, res.indices
        counts = dict.fromkeys(sorted(set(pool.sources)), 0)  # every source, 0 included
        for i in res.indices.tolist():
            counts[pool.sources[i]] += 1
        self.cit_stats = {"cit_round": r, "cit_kept": len(res.indices),
                          "cit_scanned": res.scanned, "cit_keep_ratio": len(res.indices) / res.scanned,
                          "cit_pass_ratio": res.passed / res.scanned,
                          "cit_fallback_chunks": res.fallback_chunks}  # fmt: skip
        self.cit_stats |= {f"cit_share_{k}": v / len(res.indices) for k, v in counts.items()}
        if data.rank == 0:
            from tqdm import tqdm

            parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            tqdm.write(f"CiT round {r}: kept {len(res.indices)} of {res.scanned} scanned "
                       f"({res.passed} above t={self.cfg.threshold}); {parts}")  # fmt: skip

    def forward(self, batch: dict, noise: Tensor | None = None) -> dict[str, Tensor]:
        out = self.clip_outputs(batch, noise)
        return out | {k: torch.tensor(float(v)) for k, v in self.cit_stats.items()}

    def train_data(self, cfg, *, rank: int, world_size: int, device):
        """The training loop's data source: the curated pool (`visrep.data.cit_pool`)."""

        return CiTData(self, cfg.data, cfg.optim.batch_size, seed=cfg.run.seed, rank=rank,
                       world_size=world_size, device=device)  # fmt: skip

    def get_extra_state(self) -> dict:
        return {"round": self.cit_round, "cursor": self.cit_cursor,
                "indices": self.cit_indices.clone(), "stats": dict(self.cit_stats)}  # fmt: skip

    def set_extra_state(self, state: dict) -> None:
        self.cit_round, self.cit_cursor = int(state["round"]), int(state["cursor"])
        self.cit_indices = state["indices"].clone().long()
        self.cit_stats = dict(state["stats"])
