"""`run.compile` falls back to eager with its reason when compiling fails, and
`run.channels_last` changes the layout, not the result (issue 16, part 6)."""

import functools
import logging

import pytest
import torch
from conftest import requires_fmnist
from torch import nn

import visrep.loop as loop_module
from visrep.checkpoint import load_checkpoint
from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.data.resolve import resolve_data
from visrep.device import CompiledOrEager
from visrep.loop import train
from visrep.runs import build_model

QUIET = {"eval.final": False, "eval.every_epochs": 0, "run.threads": 1, "run.progress": False}


def _no_compiler(gm, example_inputs):  # a torch.compile backend that fails like a missing cc
    raise RuntimeError("no C compiler found")


class Noisy(nn.Module):
    """Draws from the global RNG in its forward, as MAE's masking does."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x) + torch.rand(x.shape[0], 3)


def test_compile_failure_falls_back_to_eager_with_the_reason_and_the_same_draws(caplog):
    model, x = Noisy(), torch.randn(5, 4)
    torch.manual_seed(7)
    want = model(x)
    step = CompiledOrEager(model, backend=_no_compiler)
    torch.manual_seed(7)
    with caplog.at_level(logging.WARNING, logger="visrep"):
        got = step(x)
    assert torch.equal(got, want)  # the RNG state was restored before the eager retry
    assert step.fallback_reason == "RuntimeError: no C compiler found"
    assert "run.compile" in caplog.text and "no C compiler found" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visrep"):
        step(x)  # later calls are eager without a second attempt or warning
    assert step.compiled is None and not caplog.text


def test_compiled_call_matches_eager_and_module_errors_propagate():
    model, x = nn.Linear(4, 3), torch.randn(5, 4)
    step = CompiledOrEager(model, backend="eager")  # dynamo tracing, no code generation
    assert torch.allclose(step(x), model(x)) and step.fallback_reason == ""
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        CompiledOrEager(model, backend="eager")(torch.randn(5, 7))


def _weights(run_dir) -> dict:
    return load_checkpoint(run_dir, map_location="cpu")["model"]


@requires_fmnist
def test_train_with_a_failing_compiler_ends_at_the_eager_runs_weights(tmp_path, monkeypatch):
    cfg = replace(smoke(get_recipe("mae_fmnist")), **QUIET, **{"run.max_steps": 3})
    train(replace(cfg, **{"run.out_dir": str(tmp_path / "eager")}))
    monkeypatch.setattr(loop_module, "CompiledOrEager",
                        functools.partial(CompiledOrEager, backend=_no_compiler))  # fmt: skip
    train(replace(cfg, **{"run.out_dir": str(tmp_path / "compiled"), "run.compile": True}))
    a, b = _weights(tmp_path / "eager"), _weights(tmp_path / "compiled")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@requires_fmnist
def test_channels_last_trains_a_convnet_to_the_same_weights_and_saves_them(tmp_path, monkeypatch):
    cfg = replace(smoke(get_recipe("simsiam_fmnist")), **QUIET, **{"run.max_steps": 2})
    train(replace(cfg, **{"run.out_dir": str(tmp_path / "nchw")}))
    layouts = []
    inner = loop_module._loop

    def spy(cfg, model, *args):  # the layout of the 4-D weights the loop trains
        w = [p for p in model.parameters() if p.ndim == 4 and min(p.shape[1:]) > 1]
        layouts.append(all(p.is_contiguous(memory_format=torch.channels_last)
                           and not p.is_contiguous() for p in w))  # fmt: skip
        return inner(cfg, model, *args)

    monkeypatch.setattr(loop_module, "_loop", spy)
    train(replace(cfg, **{"run.out_dir": str(tmp_path / "nhwc"), "run.channels_last": True}))
    assert layouts == [True]
    a, b = _weights(tmp_path / "nchw"), _weights(tmp_path / "nhwc")
    convs = [k for k, v in a.items() if v.ndim == 4]
    assert convs, "the smoke SimSiam has convolutions"
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4), k


@pytest.mark.parametrize("recipe", ["mocov3_fmnist", "rho_moco_mfmnist", "rho_swav_mfmnist"])
def test_state_a_step_hook_changes_does_not_recompile(recipe):
    """MoCo v3 / ρMoCo log their momentum, which `on_step_end` changes every step; read as a
    Python float in `forward` it made torch.compile guard on its value and recompile each
    step (a 6-step compiled MoCo v3 run on CPU took 15 minutes). ρMoCo / ρSwAV read their
    step counter as a Python int (queue / prototype freezing): a graph break and a recompile
    per step while frozen. Counted with a backend that records each graph it is asked to
    compile (dynamo tracing only)."""
    graphs: list[int] = []

    def counting(gm, _example_inputs):
        graphs.append(1)
        return gm.forward

    torch._dynamo.reset()
    cfg = resolve_data(smoke(get_recipe(recipe)))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    d = cfg.data
    shape = (
        (4, d.channels, d.frames, d.img_size, d.img_size)
        if d.frames
        else (4, d.channels, d.img_size, d.img_size)
    )
    batch = {"views": [torch.randn(shape), torch.randn(shape)]}
    step = torch.compile(model, backend=counting)
    counts = []
    for progress in (0.1, 0.4, 0.7):
        out = step(batch)
        if "momentum" in out:
            assert float(out["momentum"]) == pytest.approx(model.momentum, rel=1e-6)
        model.on_step_end(progress)
        counts.append(len(graphs))
    assert counts[0] > 0 and counts[1] == counts[2] == counts[0], counts
