"""CLIP's text tower: open_clip's `TextTransformer` as CLIP configures it.

CLIP (Radford et al., 2021, Sec. 2.4; openai/CLIP `clip/model.py`) and SLIP (Mu et al.,
2022; facebookresearch/SLIP `models.py`) use one causal text transformer: token embedding +
learned positional embedding → pre-LN residual attention blocks with a causal mask
(QuickGELU MLP, LayerNorm in fp32) → ln_final → the feature at the end-of-text position.
open_clip's `open_clip.transformer.TextTransformer` is that module, with the same parameter
names (`token_embedding`, `positional_embedding`,
`transformer.resblocks.{i}.attn.in_proj_weight`, `.mlp.c_fc`, `.mlp.c_proj`, `ln_final`) and
CLIP's init, so it is used here as is (`act_layer=QuickGELU`, `norm_layer=LayerNormFp32`,
argmax pooling, no projection: CLIP keeps `text_projection` on the model). A state dict maps
onto open_clip's `CLIP` text part by name.

The one override is `forward`, for sequences shorter than the context: open_clip's applies
its full [context, context] causal mask, so it needs all `context_length` columns, while
`CLIP.encode_text` drops the all-padding tail columns (exact under the causal mask, and much
cheaper for short captions). Everything else, modules, init and pooling, is open_clip's.

The EOT position is the argmax of the token ids, as the official code does (EOT = 49407 is
the largest id); with visrep's tokenizer (`truncate="eot"`, open_clip's rule) every row holds
an EOT, so the argmax is always the EOT position, also for captions cut at the context length.
"""

from __future__ import annotations

from open_clip.transformer import LayerNormFp32, QuickGELU, text_global_pool
from open_clip.transformer import TextTransformer as OpenCLIPTextTransformer
from torch import Tensor


class TextTransformer(OpenCLIPTextTransformer):
    """Causal text transformer pooled at EOT: token ids [N, T] -> features [N, width].

    Args:
        vocab_size: 49408 for CLIP's BPE.
        context_length: T (77).
        width, layers, heads: 512, 12, 8 in CLIP/SLIP.
    """

    def __init__(
        self,
        vocab_size: int = 49408,
        context_length: int = 77,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
    ) -> None:
        if width % heads:
            raise ValueError(f"text width {width} is not divisible by {heads} heads")
        super().__init__(
            context_length=context_length,
            vocab_size=vocab_size,
            width=width,
            heads=heads,
            layers=layers,
            output_dim=None,  # the projection is CLIP's `text_projection`, not the tower's
            pool_type="argmax",
            act_layer=QuickGELU,
            norm_layer=LayerNormFp32,
        )

    def forward(self, tokens: Tensor) -> Tensor:
        """open_clip's forward for T <= context_length columns (its causal mask cut to T)."""
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(
                f"tokens must be [N, T<={self.context_length}] ids from visrep.data.tokenizer, "
                f"got shape {tuple(tokens.shape)}"
            )
        t = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:t]  # [N, T, W]
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask[:t, :t]))
        return text_global_pool(x, tokens, pool_type="argmax")  # [N, W]
