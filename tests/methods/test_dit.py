"""DiT (Peebles & Xie, 2023; facebookresearch/DiT) against its formulas: adaLN-Zero at init, the
[cos, sin] timestep embedding, MAE's patch order, the linear schedule's ᾱ, the hybrid loss
computed by hand, classifier-free guidance (scale 1, and the 3-channel quirk), respacing;
then `visrep train dit_fmnist` and `visrep sample` end to end."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist, visrep
from PIL import Image

from visrep.backbones import build_backbone
from visrep.backbones.vit import ViT
from visrep.cli import main
from visrep.config import BackboneConfig, DataConfig
from visrep.method_configs import DiTConfig
from visrep.methods.dit import DiT, timestep_embedding
from visrep.parts.diffusion import (
    GaussianDiffusion,
    discretized_gaussian_log_likelihood,
    normal_kl,
    space_timesteps,
)
from visrep.parts.patches import patchify, unpatchify


def _dit(num_classes: int = 10, channels: int = 1, depth: int = 2, **kw) -> DiT:
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("vit_tiny", patch_size=4, depth=depth),
                        DataConfig(img_size=8, channels=channels))  # fmt: skip
    return DiT(DiTConfig(num_classes=num_classes, **kw), bb)


def _perturb(model: DiT) -> DiT:
    """Random values in every zero-initialised layer (adaLN, output), so nothing is trivial."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in [*model.net.adaLN, model.net.final_adaLN]:
            for p in mod[-1].parameters():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        for p in model.net.final_linear.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_at_init_the_output_is_zero_and_every_block_is_the_identity():
    model = _dit()
    net = model.net
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999]), torch.tensor([1, 2, 10])
    assert torch.equal(net(x, t, y), torch.zeros(3, 2, 8, 8))
    vit = net.backbone.model
    h = vit.patch_embed(x) + vit.pos_embed[:, 1:]
    c = net.condition(t, y)
    assert c.abs().sum() > 0  # the condition is not zero, only its modulation is
    for i in range(len(net.adaLN)):
        assert torch.equal(net.block(i, h, c), h)
    _perturb(model)
    assert not torch.equal(net.block(0, h, c), h) and net(x, t, y).abs().sum() > 0
    # the ViT's norms are DiT's non-affine LayerNorms (eps 1e-6), held fixed
    norm = vit.blocks[0].norm1
    assert not norm.weight.requires_grad and norm.eps == 1e-6
    ref = torch.nn.functional.layer_norm(h, (h.shape[-1],), eps=1e-6)
    torch.testing.assert_close(norm(h), ref, rtol=0, atol=0)
    assert isinstance(vit.blocks[0].mlp.act, torch.nn.GELU)
    assert vit.blocks[0].mlp.act.approximate == "tanh"


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 1, 999])
    emb = timestep_embedding(t, 256)
    k = torch.arange(128, dtype=torch.float64)
    freqs = torch.exp(-math.log(10000) * k / 128)
    args = t[:, None].double() * freqs[None]
    torch.testing.assert_close(emb[:, :128].double(), torch.cos(args), rtol=0, atol=2e-4)
    torch.testing.assert_close(emb[:, 128:].double(), torch.sin(args), rtol=0, atol=2e-4)
    assert torch.equal(emb[0], torch.cat([torch.ones(128), torch.zeros(128)]))  # t = 0
    assert emb[1, 0].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    assert emb[1, 128].item() == pytest.approx(math.sin(1.0), abs=1e-7)


def test_unpatchify_is_the_inverse_of_patchify_in_maes_order():
    """Token ℓ = i·w + j; inside a token (u·p + v)·C + c, channel fastest (§0.4), as the
    official `unpatchify`'s einsum 'nhwpqc->nchpwq'."""
    n, c, p, gh, gw = 2, 3, 2, 3, 4
    tokens = torch.randn(n, gh * gw, p * p * c)
    img = unpatchify(tokens, p, c, (gh, gw))
    for i, j, u, v, ch in [(0, 0, 0, 0, 0), (1, 2, 1, 0, 2), (2, 3, 1, 1, 1), (0, 1, 0, 1, 2)]:
        assert img[1, ch, i * p + u, j * p + v] == tokens[1, i * gw + j, (u * p + v) * c + ch]
    official = torch.einsum("nhwpqc->nchpwq", tokens.reshape(n, gh, gw, p, p, c))
    assert torch.equal(img, official.reshape(n, c, gh * p, gw * p))
    assert torch.equal(patchify(img, p), tokens)


def test_linear_schedule_alpha_bar_endpoints_and_respacing():
    d = GaussianDiffusion.linear(1000)
    assert d.betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert d.betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    assert d.alphas_cumprod[0].item() == pytest.approx(0.9999, abs=1e-15)
    # Π_k (1 − β_k), β_k = 1e-4 + k·(0.02 − 1e-4)/999, by hand in float64
    assert d.alphas_cumprod[-1].item() == pytest.approx(4.0358297653756754e-05, rel=1e-10)
    assert (
        space_timesteps(1000, "250")[:4] == [0, 4, 8, 12]
        and len(space_timesteps(1000, "250")) == 250
    )
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    r = GaussianDiffusion.linear(1000, "10")
    keep = r.timestep_map.tolist()
    assert keep == space_timesteps(1000, "10") and keep[0] == 0 and keep[-1] == 999
    torch.testing.assert_close(r.alphas_cumprod, d.alphas_cumprod[keep], rtol=1e-12, atol=0)


def _phi(x: float) -> float:  # the tanh approximation of Φ upstream uses
    return 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def test_hybrid_loss_against_a_hand_computation():
    """One 1×2×2 image at t ∈ {0, 1, 500}: L_simple, and L_vlb (KL for t > 0, the discretized
    decoder NLL at t = 0) in bits per dimension, from the formulas in float64."""
    d = GaussianDiffusion.linear(1000)
    x0 = torch.tensor([[[[-1.0, -0.2], [0.4, 1.0]]]])
    noise = torch.tensor([[[[0.3, -1.1], [0.7, 0.05]]]])
    eps_hat = torch.tensor([[[[0.1, -0.9], [0.4, 0.3]]]])
    v = torch.tensor([[[[-0.5, 0.2], [0.9, -1.0]]]])
    b = [1e-4 + k * (0.02 - 1e-4) / 999 for k in range(1000)]
    ab = list(np.cumprod([1 - x for x in b]))
    for t in (0, 1, 500):
        out = d.training_losses(lambda xt, tt: torch.cat([eps_hat, v], 1), x0, torch.tensor([t]),
                                noise)  # fmt: skip
        a, a_prev = ab[t], (ab[t - 1] if t else 1.0)
        post_var = [b[k] * (1 - (ab[k - 1] if k else 1.0)) / (1 - ab[k]) for k in (1, t)]
        log_post = math.log(post_var[1] if t else post_var[0])  # clipped at t = 0
        mse = vb = 0.0
        for idx in range(4):
            i, j = divmod(idx, 2)
            x, e, eh, vv = (float(z[0, 0, i, j]) for z in (x0, noise, eps_hat, v))
            xt = math.sqrt(a) * x + math.sqrt(1 - a) * e
            mse += (e - eh) ** 2 / 4
            c1, c2 = (
                b[t] * math.sqrt(a_prev) / (1 - a),
                (1 - a_prev) * math.sqrt(1 - b[t]) / (1 - a),
            )
            true_mean = c1 * x + c2 * xt
            x0_hat = math.sqrt(1 / a) * xt - math.sqrt(1 / a - 1) * eh
            mean = c1 * x0_hat + c2 * xt
            logvar = (vv + 1) / 2 * math.log(b[t]) + (1 - vv) / 2 * log_post
            if t > 0:  # KL(N(true_mean, e^log_post) || N(mean, e^logvar)), nats
                term = 0.5 * (-1 + logvar - log_post + math.exp(log_post - logvar)
                              + (true_mean - mean) ** 2 * math.exp(-logvar))  # fmt: skip
            else:  # −log P(bin of x), bins of width 2/255, edge bins take the tails
                s = math.exp(-0.5 * logvar)
                hi, lo = _phi(s * (x - mean + 1 / 255)), _phi(s * (x - mean - 1 / 255))
                p = hi if x < -0.999 else (1 - lo if x > 0.999 else hi - lo)
                term = -math.log(max(p, 1e-12))
            vb += term / 4 / math.log(2)
        assert out["mse"].item() == pytest.approx(mse, rel=1e-5)
        assert out["vb"].item() == pytest.approx(vb, rel=1e-4, abs=1e-7), t
        assert out["loss"].item() == pytest.approx(mse + vb, rel=1e-4)


def test_the_vlb_term_trains_only_the_variance():
    d = GaussianDiffusion.linear(1000)
    x0, noise = torch.rand(2, 1, 4, 4) * 2 - 1, torch.randn(2, 1, 4, 4)
    eps = torch.randn(2, 1, 4, 4, requires_grad=True)
    v = torch.zeros(2, 1, 4, 4, requires_grad=True)
    out = d.training_losses(lambda xt, t: torch.cat([eps, v], 1), x0, torch.tensor([3, 700]), noise)
    out["vb"].sum().backward()
    assert eps.grad is None or eps.grad.abs().sum() == 0
    assert v.grad.abs().sum() > 0


def test_kl_and_discretized_likelihood_match_the_exact_gaussian():
    """normal_kl against torch.distributions; the tanh-approximated discretized likelihood
    against the exact Φ (the approximation is off by < 1e-3 in probability)."""
    m1, m2, lv1, lv2 = torch.randn(4, dtype=torch.float64).unbind(0)
    p = torch.distributions.Normal(m1, (0.5 * lv1).exp())
    q = torch.distributions.Normal(m2, (0.5 * lv2).exp())
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), torch.distributions.kl_divergence(p, q))
    x = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0], dtype=torch.float64)
    mean, log_scale = torch.full_like(x, 0.1), torch.full_like(x, math.log(0.3))
    g = torch.distributions.Normal(mean, log_scale.exp())
    hi, lo = g.cdf(x + 1 / 255), g.cdf(x - 1 / 255)
    exact = torch.where(x < -0.999, hi, torch.where(x > 0.999, 1 - lo, hi - lo))
    approx = discretized_gaussian_log_likelihood(x, mean, log_scale).exp()
    torch.testing.assert_close(approx, exact, rtol=0, atol=1e-3)


def test_guidance_scale_one_equals_the_conditional_model():
    net = _perturb(_dit()).net.eval()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 400, 990]), torch.tensor([0, 4, 9])
    null = torch.full_like(y, 10)
    both = net.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), 1.0)
    cond = net(x, t, y)
    torch.testing.assert_close(both[:3], cond, rtol=0, atol=1e-6)
    s = 4.0
    guided = net.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), s)
    uncond = net(x, t, null)
    eps = uncond[:, :1] + s * (cond[:, :1] - uncond[:, :1])
    torch.testing.assert_close(guided[:3, :1], eps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(guided[:3, 1:], cond[:, 1:], rtol=1e-5, atol=1e-6)  # variance


def test_guidance_covers_the_first_three_eps_channels_as_upstream():
    """4-channel latents: ε channels 0-2 guided, the 4th (and the variance) left as is."""
    torch.manual_seed(0)
    vit = ViT("vit_tiny", img_size=8, patch_size=4, in_chans=4, depth=1)
    net = _perturb(DiT(DiTConfig(num_classes=10), vit)).net.eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([10, 600]), torch.tensor([3, 7])
    null = torch.full_like(y, 10)
    g = net.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), 3.0)
    cond, uncond = net(x, t, y), net(x, t, null)
    torch.testing.assert_close(g[:2, :3], uncond[:, :3] + 3.0 * (cond[:, :3] - uncond[:, :3]),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    torch.testing.assert_close(g[:2, 3:], cond[:, 3:], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(g[:2, 3], uncond[:, 3] + 3.0 * (cond[:, 3] - uncond[:, 3]))


def test_labels_are_dropped_to_the_null_class_and_unconditional_has_no_table():
    model = _perturb(_dit())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 3])
    y = torch.tensor([2, 2])
    dropped = model.net(x, t, y, drop=torch.tensor([False, True]))
    torch.testing.assert_close(dropped[0], model.net(x[:1], t[:1], y[:1])[0])
    torch.testing.assert_close(dropped[1], model.net(x[1:], t[1:], torch.tensor([10]))[0])
    assert model.net.y_embedder.num_embeddings == 11  # 10 classes + the null class
    unc = _dit(num_classes=0)
    assert unc.net.y_embedder is None and unc.num_classes == 0
    out = unc({"images": torch.randn(2, 1, 8, 8)})
    assert out["loss"].ndim == 0 and set(out) == {"loss", "mse", "vb"}


def test_ema_follows_the_online_weights_and_sampling_is_seeded():
    model = _dit(ema_decay=0.9)
    online = model.net.final_linear.weight
    with torch.no_grad():
        online.add_(1.0)
    model.on_step_end(0.1)
    torch.testing.assert_close(model.ema.final_linear.weight, 0.1 * online.detach())
    assert not any(p.requires_grad for p in model.ema.parameters())
    _perturb(model)
    kw = dict(labels=torch.tensor([1, 2]), cfg_scale=2.0, steps=4)
    a = model.sample(2, generator=torch.Generator().manual_seed(0), **kw)
    b = model.sample(2, generator=torch.Generator().manual_seed(0), **kw)
    c = model.sample(2, generator=torch.Generator().manual_seed(0), ddim=True, **kw)
    assert a.shape == (2, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)


def test_latent_mode_without_a_vae_is_a_clear_error():
    with pytest.raises(ValueError, match=r"method\.vae=PATH.*not available offline"):
        _dit(latent=True)


@requires_fmnist
def test_train_then_sample_through_the_cli(tmp_path, capsys):
    """`visrep train dit_fmnist` (a subprocess, 3 steps), then `visrep sample` on its
    checkpoint (the CLI's `main`, in this process to save a torch start-up)."""
    run, out = tmp_path / "run", tmp_path / "samples"
    visrep("train", "dit_fmnist", "--smoke", f"run.out_dir={run}", "run.max_steps=3",
           "eval.every_epochs=0", "run.threads=1")  # fmt: skip
    assert (run / "checkpoint.pt").is_file() and (run / "report.md").is_file()
    args = ["sample", "--ckpt", str(run), "--device", "cpu"]
    assert main([*args, "--n", "6", "--steps", "3", "--cfg", "1.5", "--out", str(out)]) == 0
    assert "samples.png" in capsys.readouterr().out
    png = Image.open(out / "samples.png")
    assert png.size == (2 + 10 * 30, 2 + 1 * 30)  # a column per class, 28 px + 2 px gaps
    arr = np.load(out / "samples.npz")
    assert arr["arr_0"].shape == (6, 28, 28, 1) and arr["arr_0"].dtype == np.uint8
    assert arr["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    assert json.loads((out / "samples.json").read_text())["cfg_scale"] == 1.5
    ddim = ["--n", "2", "--steps", "ddim2", "--ddim", "--class", "7"]
    assert main([*args, *ddim, "--out", str(tmp_path / "ddim")]) == 0
    assert np.load(tmp_path / "ddim" / "samples.npz")["labels"].tolist() == [7, 7]
    assert main([*args, "--class", "10", "--out", str(tmp_path / "x")]) == 2
    assert "classes 0..9" in capsys.readouterr().err


class _FakeVAE:
    """Stands in for a diffusers AutoencoderKL: 8× average-pool to 4 channels and back."""

    def to(self, device):
        return self

    def encode(self, images):
        z = F.avg_pool2d(images, 8).repeat(1, 2, 1, 1)[:, :4]  # [N, 4, H/8, W/8]
        return SimpleNamespace(latent_dist=SimpleNamespace(sample=lambda: z))

    def decode(self, z):
        return SimpleNamespace(sample=F.interpolate(z[:, :3], scale_factor=8))


def test_latent_mode_diffuses_scaled_vae_latents():
    """With a VAE (here a stand-in): 4 channels at 1/8 of the image side, posterior sample
    × 0.18215 (`train.py`), decoded ÷ 0.18215 (`sample.py`), latents never clamped."""
    torch.manual_seed(0)
    vit = build_backbone(BackboneConfig("vit_tiny", patch_size=2, depth=1),
                         DataConfig(img_size=32, channels=3))  # fmt: skip
    model = DiT(DiTConfig(num_classes=10, latent=True, vae="stand-in"), vit)
    model._vae.append(_FakeVAE())
    assert model.backbone.in_chans == 4 and model.backbone.img_size == 4
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    z = model.to_model_space(images)
    assert z.shape == (2, 4, 4, 4)
    torch.testing.assert_close(z[:, :1], F.avg_pool2d(images, 8)[:, :1] * 0.18215)
    out = model({"images": images, "labels": torch.tensor([1, 2])})
    assert out["loss"].isfinite()
    x = model.sample(2, labels=torch.tensor([0, 1]), steps=2, clip=(torch.zeros(1), torch.zeros(1)))
    assert x.shape == (2, 4, 4, 4) and x.abs().sum() > 0  # a zero clip would have zeroed pixels
    assert model.to_pixels(x).shape == (2, 3, 32, 32)
