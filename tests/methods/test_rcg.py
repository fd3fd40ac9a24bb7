"""RCG (Li, Katabi & He, 2024; LTH14/rcg) against its formulas: per-sample standardisation,
the LDM linear schedule, the RDM's x₀ loss by hand, the SimpleMLP's zero init, the learned
fake latent (training drop and guidance), guidance scale 1 = the conditional model; then
two stages in one run with exact resume, and `visrep sample` on it, on Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_fmnist
from torch import nn

from visrep.backbones import build_backbone
from visrep.checkpoint import load_checkpoint
from visrep.config import BackboneConfig, ConfigError, DataConfig, replace
from visrep.configs import get_recipe, smoke
from visrep.loop import train
from visrep.method_configs import RCGConfig
from visrep.methods.rcg import RCG, EncoderInput, projection_encoder, standardize
from visrep.parts.diffusion import GaussianDiffusion, ldm_linear_betas
from visrep.runs import build_model, load_run
from visrep.sample import draw

D = 6  # representation size of the toy encoder


def _rcg(**kw) -> RCG:
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("vit_tiny", patch_size=4, depth=1),
                        DataConfig(img_size=8, channels=1))  # fmt: skip
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, D))
    to_enc = EncoderInput((0.5,), (0.5,), 8, 1, (0.0,), (1.0,))
    cfg = RCGConfig(rdm_width=16, rdm_depth=2, rdm_time_dim=8, rdm_steps=2, **kw)
    return RCG(cfg, bb, encoder=encoder, encoder_input=to_enc, rep_dim=D)


def _perturb(module: nn.Module, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_standardize_per_sample_with_the_unbiased_std():
    rep = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 10.0]])
    s1 = ((1.5**2 + 0.5**2) * 2 / 3) ** 0.5
    s2 = ((2.0**2 * 3 + 6.0**2) / 3) ** 0.5
    want = torch.tensor(
        [[-1.5 / s1, -0.5 / s1, 0.5 / s1, 1.5 / s1], [-2 / s2, -2 / s2, -2 / s2, 6 / s2]]
    )
    assert torch.allclose(standardize(rep), want, atol=1e-6)


def test_ldm_linear_schedule_endpoints():
    b = ldm_linear_betas(1000)
    assert b.dtype == torch.float64 and len(b) == 1000
    assert b[0].item() == pytest.approx(0.0015) and b[-1].item() == pytest.approx(0.0195)
    assert torch.allclose(b.sqrt().diff(), torch.full((999,), (0.0195**0.5 - 0.0015**0.5) / 999,
                                                      dtype=torch.float64))  # fmt: skip


def test_encoder_input_maps_generator_pixels_to_the_encoders_normalisation():
    to_enc = EncoderInput((0.5,), (0.5,), 4, 3, (0.2, 0.3, 0.4), (0.5, 0.5, 0.25))
    x = torch.full((1, 1, 4, 4), 0.6)  # generator units: pixel 0.8
    out = to_enc(x)
    assert out.shape == (1, 3, 4, 4)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.2, 1.0, 1.6]), atol=1e-5)


def test_rdm_loss_is_x0_mse_by_hand_and_zero_init_gives_d_minus_1_over_d():
    model = _rcg()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    t, noise = torch.tensor([0, 10, 500, 999]), torch.randn(4, D)
    rep = standardize(model.encoder(model.encoder_input(x)))
    out = model({"images": x}, t=t, noise=noise)
    # the zero-initialised output layer predicts x̂₀ = 0; a standardised rep has Σr² = D − 1
    assert model.stage == 0 and out["loss"].item() == pytest.approx((D - 1) / D, rel=1e-5)
    _perturb(model.rdm)
    ab = torch.cumprod(1 - ldm_linear_betas(1000), 0)[t].float()[:, None]
    xt = ab.sqrt() * rep + (1 - ab).sqrt() * noise
    want = ((rep - model.rdm(xt, t)) ** 2).mean()
    assert model({"images": x}, t=t, noise=noise)["loss"].item() == pytest.approx(
        want.item(), rel=1e-5
    )


def test_simple_mlp_layout_and_zero_init():
    model = _rcg()
    rdm = model.rdm
    assert [type(m) for m in rdm.out] == [nn.LayerNorm, nn.SiLU, nn.Linear]
    assert rdm.out[0].eps == 1e-6 and rdm.time_embed[0].in_features == 16
    assert len(rdm.res_blocks) == 2
    assert all(torch.equal(b.out_layers[-1].weight, torch.zeros(16, 16)) for b in rdm.res_blocks)
    assert torch.equal(rdm(torch.randn(3, D), torch.tensor([1, 2, 3])), torch.zeros(3, D))


def test_dropped_representations_become_the_fake_latent():
    model = _rcg()
    gen = model.gen
    rep = torch.randn(3, D)
    drop = torch.tensor([True, False, True])
    emb = gen.embed(rep, drop)
    assert torch.allclose(emb[0], gen.rep_embedder(gen.fake_latent)[0])
    assert torch.allclose(emb[1], gen.rep_embedder(rep[1]))
    assert gen.fake_latent.std().item() == pytest.approx(0.02, rel=0.9)  # normal(0, 0.02)


def test_guidance_scale_1_is_the_conditional_model_and_0_the_fake_latent():
    model = _rcg()
    _perturb(model.gen)
    gen, rep = model.gen, torch.randn(2, D)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    reps = torch.cat([rep, gen.fake_latent.expand_as(rep)])
    xx, tt = torch.cat([x, x]), torch.cat([t, t])
    cond = gen(x, t, rep)
    uncond = gen(x, t, rep, drop=torch.ones(2, dtype=torch.bool))
    assert torch.allclose(gen.forward_with_cfg(xx, tt, reps, 1.0)[:2], cond, atol=1e-6)
    assert torch.allclose(gen.forward_with_cfg(xx, tt, reps, 0.0)[:2, :1], uncond[:, :1], atol=1e-6)
    s = 3.0  # ε channels guided, the variance channel the conditional half's own
    guided = gen.forward_with_cfg(xx, tt, reps, s)[:2]
    assert torch.allclose(
        guided[:, :1], uncond[:, :1] + s * (cond[:, :1] - uncond[:, :1]), atol=1e-5
    )
    assert torch.allclose(guided[:, 1:], cond[:, 1:], atol=1e-6)


def test_sample_with_guidance_1_is_the_conditional_sampler():
    model = _rcg(rdm_sample_steps=5, rdm_diffusion_steps=20, diffusion_steps=100)
    _perturb(model.gen)
    reps = torch.randn(2, D)
    a = model.sample(
        2,
        reps=reps,
        steps=4,
        cfg_scale=1.0,
        use_ema=False,
        generator=torch.Generator().manual_seed(0),
    )
    process = GaussianDiffusion.linear(100, "4")
    z = torch.randn(2, 1, 8, 8, generator=(g := torch.Generator().manual_seed(0)))
    b = process.sample(lambda x, t: model.gen(x, t, reps), z, generator=g)
    assert torch.allclose(a, b, atol=1e-6)
    c = model.sample(
        2,
        reps=reps,
        steps=4,
        cfg_scale=4.0,
        use_ema=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert not torch.allclose(a, c)
    sampled = model.sample_reps(5, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (5, D) and torch.isfinite(sampled).all()


def test_only_the_active_stage_gets_gradients_and_steps_switch_it():
    model = _rcg()
    _perturb(model.rdm)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    for stage in (0, 1):
        model.zero_grad(set_to_none=True)
        assert model.stage == stage
        model({"images": x})["loss"].backward()
        rdm_grad = any(p.grad is not None for p in model.rdm.parameters())
        gen_grad = any(p.grad is not None for p in model.gen.parameters())
        assert (rdm_grad, gen_grad) == ((True, False) if stage == 0 else (False, True))
        assert all(p.grad is None for p in model.encoder.parameters())
        model.on_step_end(0.0)
        model.on_step_end(0.0)  # rdm_steps = 2
    assert int(model.steps_done) == 4 and model.lr_scale("rdm.input_proj.weight") == 1.0
    assert "gen.rep_embedder.weight" in model.no_decay_names
    assert not any(n.startswith("rdm.") for n in model.no_decay_names)


def test_encoder_must_be_a_trained_run_with_a_projection_head(tmp_path):
    with pytest.raises(ValueError, match="MoCo v3 or SimCLR"):
        projection_encoder(nn.Linear(2, 2))
    cfg = replace(get_recipe("rcg_fmnist"), **{"method.encoder": str(tmp_path / "nothing")})
    with pytest.raises(ConfigError, match="trained MoCo v3"):
        build_model(cfg)


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc")
    cfg = replace(smoke(get_recipe("mocov3_fmnist")), **{
        "run.out_dir": str(out), "run.max_steps": 1, "run.threads": 1, "eval.final": False,
        "eval.every_epochs": 0, "data.limit": 64})  # fmt: skip
    train(cfg)
    return out


def _rcg_cfg(encoder, out, **kw):
    return replace(smoke(get_recipe("rcg_fmnist")), **{
        "method.encoder": str(encoder), "method.rdm_steps": 3, "run.out_dir": str(out),
        "run.threads": 1, "eval.final": False, "eval.every_epochs": 0, "data.limit": 64,
        "optim.batch_size": 16, "optim.epochs": 2, "run.ckpt_every_minutes": 0} | kw)  # fmt: skip


@requires_fmnist
def test_two_stages_in_one_run_resume_exactly_and_sample(encoder_run, tmp_path):
    full = tmp_path / "full"
    train(_rcg_cfg(encoder_run, full))  # 8 steps: 3 RDM, 5 generator
    part = tmp_path / "part"
    train(_rcg_cfg(encoder_run, part, **{"run.max_steps": 2}))  # stops inside stage 1
    assert int(load_checkpoint(part)["model"]["steps_done"]) == 2
    train(_rcg_cfg(encoder_run, part), resume=True)
    a, b = load_checkpoint(full)["model"], load_checkpoint(part)["model"]
    assert int(a["steps_done"]) == 8 and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    _, model = load_run(full)
    enc_cfg, enc = load_run(encoder_run)  # the frozen encoder was not trained
    for k, v in enc.backbone.state_dict().items():
        assert torch.equal(model.encoder[0].state_dict()[k], v), k
    images, labels, info = draw(full, 4, cfg_scale=2.0, steps=3, device="cpu")
    assert images.shape == (4, 28, 28, 1) and images.dtype == np.uint8
    assert (labels == -1).all() and info["weights"] == "ema"
