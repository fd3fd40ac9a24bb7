"""CLIP's text tower (METHODS.md §5.1; OpenAI CLIP / SLIP `models.py` L67-148).

Token embedding + learned positional embedding → pre-LN residual attention blocks with a
causal mask (QuickGELU MLP, LayerNorm in fp32) → ln_final → the feature at the end-of-text
position. The EOT position is the argmax of the token ids, as the official code does (EOT
= 49407 is the largest id); with visrep's tokenizer (`truncate="eot"`, open_clip's rule)
every row holds an EOT, so the argmax is always the EOT position (§5.7 pitfall 5).

Parameter names follow OpenAI/open_clip (`token_embedding`, `positional_embedding`,
`transformer.resblocks.{i}.attn.in_proj_weight`, `.mlp.c_fc`, `.mlp.c_proj`, `ln_final`) so a
state dict maps onto open_clip's `CLIP` text part by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNormFP32(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (CLIP's `LayerNorm` subclass)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """x ← x + Attn(LN1(x), causal); x ← x + MLP(LN2(x)), MLP = c_fc → QuickGELU → c_proj."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = LayerNormFP32(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNormFP32(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads) for _ in range(layers)]
        )

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class TextTransformer(nn.Module):
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
        super().__init__()
        if width % heads:
            raise ValueError(f"text width {width} is not divisible by {heads} heads")
        self.context_length, self.width = context_length, width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = LayerNormFP32(width)
        mask = torch.full((context_length, context_length), float("-inf")).triu(1)
        self.register_buffer("attn_mask", mask, persistent=False)  # −inf above the diagonal
        self.init_weights()

    def init_weights(self) -> None:
        """CLIP init (§5.1): embeddings N(0, 0.02) / N(0, 0.01); in_proj std W^-½, out_proj and
        c_proj std W^-½·(2·layers)^-½, c_fc std (2W)^-½. Biases keep PyTorch's zeros for
        attention and the Linear default for the MLP, as the official code."""
        w, n = self.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        attn_std, proj_std, fc_std = w**-0.5, w**-0.5 * (2 * n) ** -0.5, (2 * w) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(
                f"tokens must be [N, T<={self.context_length}] ids from visrep.data.tokenizer, "
                f"got shape {tuple(tokens.shape)}"
            )
        t = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:t]  # [N, T, W]
        x = self.ln_final(self.transformer(x, self.attn_mask[:t, :t]))
        eot = tokens.argmax(dim=-1)  # [N]: EOT has the largest id (49407)
        return x[torch.arange(x.shape[0], device=x.device), eot]  # [N, W]
