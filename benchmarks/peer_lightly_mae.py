"""Peer baseline: MAE assembled from lightly 1.6.0's parts, trained exactly like visrep's
`mae_fmnist` recipe except for the model code and the loss.

The model follows lightly's MAE example (docs.lightly.ai/examples/mae.html,
lightly `examples/pytorch/mae.py`):
  * encoder `MaskedVisionTransformerTIMM` wrapping a timm ViT (lightly re-initialises it
    MAE-style: xavier Linears, fixed 2-D sin-cos position embedding);
  * `utils.random_token_mask` (the cls token is never masked; 12 of 49 patches kept);
  * decoder `MAEDecoderTIMM`: embed the kept tokens, scatter them into a full sequence of
    mask tokens (`repeat_token` + `set_at_index`), decode, keep the masked positions
    (`get_at_index`), predict pixels;
  * target = `get_at_index(patchify(images), idx_mask - 1)`, loss = `nn.MSELoss()`.
    The example does NOT normalize pixels per patch (no norm_pix_loss): the target is
    the input image's pixels as the dataloader normalized them (here with Fashion-MNIST
    mean/std). visrep's recipe uses MAE's per-patch normalized target (norm_pix_loss).
  (lightly 1.6.0 marks `MAEDecoderTIMM` deprecated in favour of
  `MaskedVisionTransformerDecoderTIMM`; the computation is the same.)

Identical to visrep's recipe (read from `resolved_recipe("mae_fmnist")`): timm
`vit_tiny_patch16_224` at img_size 28, patch 4, 1 channel, same depth; decoder 2 blocks
× 128 wide, 4 heads; mask ratio 0.75; batch 128; the same batches (visrep's data
pipeline: same sample order, `BatchedRandomResizedCrop` scale (0.35, 1) + flip,
normalize); AdamW betas (0.9, 0.95), weight decay 0.05 with visrep's parameter groups
(no decay on 1-D params and biases), lr = blr × 128 / 256, warm-up + cosine on elapsed
wall-clock / budget exactly as visrep's `run.budget_minutes` mode; 2 threads, fp32.

Run:   .venv/bin/python benchmarks/peer_lightly_mae.py --budget-minutes 6
Output: a JSON with training statistics and k-NN / linear-probe accuracy of the encoder
(cls token and mean patch token), evaluated with visrep's `evaluate`.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, command_line, environment, uptime, write_json  # noqa: E402
from pooled_eval import evaluate_poolings  # noqa: E402

from visrep.config import TrainConfig, replace  # noqa: E402
from visrep.configs import resolved_recipe  # noqa: E402
from visrep.data.pipeline import build_train_data
from visrep.data.sampling import mix_seed
from visrep.loop import param_groups  # noqa: E402
from visrep.schedules import cosine_lr  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lightly.models import utils
    from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM


class LightlyMAE(nn.Module):
    """lightly's MAE example, sized by a visrep config."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        from visrep.backbones.vit import VIT_ARCHS

        m, bb, data = cfg.method, cfg.backbone, cfg.data
        kwargs = dict(img_size=data.img_size, patch_size=bb.patch_size, in_chans=data.channels)
        if bb.depth:
            kwargs["depth"] = bb.depth
        vit = timm.create_model(VIT_ARCHS[bb.name], pretrained=False, num_classes=0, **kwargs)
        self.mask_ratio = m.mask_ratio
        self.patch_size = bb.patch_size
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.sequence_length = self.backbone.sequence_length  # 1 + L (cls first)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MAEDecoderTIMM deprecation notice
            self.decoder = MAEDecoderTIMM(
                num_patches=vit.patch_embed.num_patches,
                patch_size=bb.patch_size,
                in_chans=data.channels,
                embed_dim=vit.embed_dim,
                decoder_embed_dim=m.decoder_dim,
                decoder_depth=m.decoder_depth,
                decoder_num_heads=m.decoder_heads,
                mlp_ratio=4.0,
                proj_drop_rate=0.0,
                attn_drop_rate=0.0,
            )

    def forward_encoder(self, images: Tensor, idx_keep: Tensor | None = None) -> Tensor:
        return self.backbone.encode(images=images, idx_keep=idx_keep)

    def forward_decoder(self, x_encoded: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        batch_size = x_encoded.shape[0]
        x_decode = self.decoder.embed(x_encoded)
        x_masked = utils.repeat_token(self.decoder.mask_token, (batch_size, self.sequence_length))
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))
        x_decoded = self.decoder.decode(x_masked)
        x_pred = utils.get_at_index(x_decoded, idx_mask)
        return self.decoder.predict(x_pred)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        batch_size = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(
            size=(batch_size, self.sequence_length),
            mask_ratio=self.mask_ratio,
            device=images.device,
        )
        x_encoded = self.forward_encoder(images=images, idx_keep=idx_keep)
        x_pred = self.forward_decoder(x_encoded=x_encoded, idx_keep=idx_keep, idx_mask=idx_mask)
        patches = utils.patchify(images, self.patch_size)
        target = utils.get_at_index(patches, idx_mask - 1)  # idx_mask counts the cls token
        return x_pred, target

    def loss(self, images: Tensor) -> Tensor:
        pred, target = self(images)
        return F.mse_loss(pred, target)  # = nn.MSELoss(), as in the example

    def tokens(self, images: Tensor) -> Tensor:
        """All tokens through the encoder, after the final norm: [N, 1+L, D]."""
        return self.backbone.encode(images=images)


def train_lightly(cfg: TrainConfig, budget_minutes: float, max_steps: int = 0) -> dict:
    """Train on visrep's batches with visrep's optimizer and wall-clock schedule."""
    o = cfg.optim
    torch.manual_seed(cfg.run.seed)
    model = LightlyMAE(cfg)
    data = build_train_data(
        cfg.data, o.batch_size, seed=cfg.run.seed, rank=0, world_size=1, device=torch.device("cpu")
    )
    base_lr = o.lr or o.blr * o.batch_size / 256
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=base_lr, betas=o.betas)
    spe = data.steps_per_epoch
    end = o.epochs * spe
    if max_steps:
        end = min(end, max_steps)
    losses: list[float] = []
    model.train()
    step = 0
    with CpuMeter() as meter:
        started = time.perf_counter()
        for batch in data.batches(0, end):
            epoch = o.epochs * (time.perf_counter() - started) / (budget_minutes * 60)
            if epoch >= o.epochs:
                break
            lr = cosine_lr(epoch, base_lr, o.warmup_epochs, o.epochs, o.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            torch.manual_seed(mix_seed(cfg.run.seed, step, 0, 1))  # mask draws, as visrep
            loss = model.loss(batch["images"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if step % 100 == 0:
                print(f"lightly step {step} epoch {epoch:.2f} loss {losses[-1]:.4f} lr {lr:.2e}",
                      flush=True)  # fmt: skip
    tail = losses[-20:] or [float("nan")]
    stats = {
        "steps": step,
        "images": step * o.batch_size,
        "epochs_of_data": round(step / spe, 3),
        "train_img_per_s": round(step * o.batch_size / meter.wall, 1),
        "final_loss_mean_last20": sum(tail) / len(tail),
        "base_lr": base_lr,
        **meter.as_dict(),
    }
    return {"model": model, "stats": stats}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=6.0)
    ap.add_argument("--recipe", default="mae_fmnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop earlier (smoke tests)")
    ap.add_argument("--eval-limit", type=int, default=0, help="images per eval split (0 = all)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--json", default="benchmarks/results/peer_lightly_mae.json")
    ap.add_argument("--save", default="", help="optional path for the trained state dict")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = replace(resolved_recipe(args.recipe), **{"run.budget_minutes": args.budget_minutes})
    result: dict = {
        "command": command_line(),
        "uptime_start": uptime(),
        "env": environment(),
        "budget_minutes": args.budget_minutes,
        "loss": "nn.MSELoss on masked patches, raw (normalized-input) pixels, no per-patch norm",
    }
    print(f"lightly MAE: {args.budget_minutes} min budget; {result['uptime_start']}", flush=True)
    trained = train_lightly(cfg, args.budget_minutes, args.max_steps)
    model = trained["model"]
    result["train"] = trained["stats"]
    result["uptime_after_train"] = uptime()
    print(f"trained: {result['train']}", flush=True)
    if args.save:
        torch.save(model.state_dict(), args.save)
    if not args.no_eval:
        with CpuMeter() as meter:
            result["eval"] = evaluate_poolings(
                model, model.tokens, cfg.data, cfg.eval, limit=args.eval_limit
            )
        result["eval_meter"] = meter.as_dict()
        for pooling, m in result["eval"].items():
            print(f"lightly {pooling}: k-NN {m['knn_top1']:.4f} linear {m['linear_top1']:.4f}")
    result["uptime_end"] = uptime()
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
