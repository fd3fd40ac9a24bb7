"""The one training loop, for every method (the method contract: docs/adding_a_method.md).

AdamW with the method's betas, lr = blr × effective batch / 256, per-iteration
warmup + cosine (MAE `util/lr_sched.py`), no weight decay on 1-D parameters and biases,
gradient accumulation and clipping, bf16 autocast on GPU, JSONL + TensorBoard
logs, periodic k-NN, atomic checkpoints with exact resume, SIGTERM/SIGINT saving,
and DistributedDataParallel when launched by torchrun.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from visrep.capabilities import (
    Classifier,
    FixedLR,
    ImageText,
    LayerDecay,
    NoDecayKeywords,
    OwnData,
    StepHook,
)
from visrep.checkpoint import (
    CHECKPOINT,
    CONFIG,
    DIFFERENT_RUNS,
    RunDirLock,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    space_warning,
)
from visrep.config import TrainConfig, replace, save_json, to_dict
from visrep.data.pipeline import build_train_data
from visrep.data.resolve import holds_out, resolve_data
from visrep.data.sampling import mix_seed
from visrep.data.video_eval import MOVING_EVAL
from visrep.device import CompiledOrEager, autocast_dtype, release_memory, resolve_device
from visrep.evals.retrieval import image_text_eval
from visrep.evals.run import evaluate
from visrep.logger import RunLogger
from visrep.methods import method_name
from visrep.parts import dist
from visrep.parts.lars import LARS
from visrep.report import finish_run, video_eval
from visrep.runs import build_model, image_source, init_video_from_image
from visrep.schedules import cosine_lr, cosine_weight_decay

log = logging.getLogger("visrep")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    decay_all: bool = False,
    *,
    lr_scale: Callable[[str], float] | None = None,
    no_decay_names: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Parameter groups: no weight decay for 1-D parameters (norms) and biases (timm 0.3.2
    `add_weight_decay`, as MAE's `main_pretrain.py` uses: cls and mask tokens *are* decayed), or
    decay on everything with `decay_all` (MoCo v3 AdamW, SimSiam SGD). Parameters under the
    method's `fixed_lr_prefixes` (SimSiam's predictor with --fix-pred-lr) get groups marked
    `fixed_lr`: they keep the peak lr. Frozen parameters are left out.

    Fine-tuning (MAE `main_finetune.py`, ConvNeXt V2 `optim_factory.py`) adds `lr_scale(name)`, the layer-wise lr decay factor
    (stored as the group's `lr_scale`, which the schedule multiplies in), and
    `no_decay_names`, parameters spared weight decay by name (MAE: pos_embed, cls_token)."""
    fixed = model.fixed_lr_prefixes if isinstance(model, FixedLR) else ()
    # names containing one of the method's `no_decay_keywords` are not decayed (SparK `utils/lr_control.py`)
    keywords = model.no_decay_keywords if isinstance(model, NoDecayKeywords) else ()
    groups: dict[tuple[bool, bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = decay_all or not (p.ndim <= 1 or name.endswith(".bias") or name in no_decay_names)
        decay = decay and not any(k in name for k in keywords)
        scale = lr_scale(name) if lr_scale is not None else 1.0
        groups.setdefault((decay, bool(fixed) and name.startswith(fixed), scale), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": weight_decay if decay else 0.0,
            "fixed_lr": fix,
            "wd_scale": 1.0 if decay else 0.0,  # the weight-decay schedule scales by it
        }
        | ({"lr_scale": scale} if lr_scale is not None else {})
        for (decay, fix, scale), ps in sorted(groups.items(), key=lambda kv: kv[0])
    ]


def build_optimizer(model: nn.Module, o: Any, lr: float) -> torch.optim.Optimizer:
    """AdamW (betas from the config), SGD (momentum, optionally Nesterov, coupled L2), LARS (MoCo v3 `optimizer.py`)
    or LAMB (timm's, as SparK's `utils/lr_control.py` builds it: eps 1e-6, bias correction, trust ratio on decayed groups only, global
    grad-norm clipping inside the optimizer at `clip_grad`)."""
    # fine-tuning (the supervised method): layer-wise lr decay and no-decay names by name
    decay = isinstance(model, LayerDecay)
    groups = param_groups(model, o.weight_decay, o.decay_all,
                          lr_scale=model.lr_scale if decay else None,
                          no_decay_names=model.no_decay_names if decay else ())  # fmt: skip
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=o.betas)
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov)
    if o.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=o.momentum)
    if o.optimizer == "lamb":
        from timm.optim import Lamb

        return Lamb(groups, lr=lr, betas=o.betas, eps=1e-6, max_grad_norm=o.clip_grad or None)
    raise ValueError(f"optim.optimizer must be adamw, sgd, lars or lamb, got {o.optimizer!r}")


class StopRequested:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step and exits."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequested:
        for s in (signal.SIGTERM, signal.SIGINT):
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


@dataclass
class LoopState:
    step: int = 0
    seen: int = 0  # images this process has trained on
    loss_sum: float = 0.0
    loss_n: int = 0
    unsaved_loss: Any = 0.0  # sum of the losses since the last checkpoint (NaN/inf propagate)
    saved_step: int = 0  # step of the checkpoint on disk
    skipped_before: int = 0  # unreadable samples counted before a resume
    end: int = 0  # the step training runs to (optim.epochs or run.max_steps)
    interval_start: float = field(default_factory=time.perf_counter)
    last_ckpt: float = field(default_factory=time.perf_counter)
    started: float = field(default_factory=time.perf_counter)


def train(cfg: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Pre-train `cfg.method` and return the final metrics (on the main process)."""
    cfg = resolve_data(cfg)  # channels, workers and evaluation that fit the data
    device = resolve_device(cfg.run.device)
    env = dist.init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    elif cfg.run.threads or "OMP_NUM_THREADS" not in os.environ:
        cores = cfg.run.threads or max(
            1, (os.cpu_count() or 1) // env.world_size - cfg.data.num_workers
        )
        torch.set_num_threads(cores)
    run_dir = Path(cfg.run.out_dir)
    name = method_name(cfg.method)
    torch.manual_seed(cfg.run.seed)  # identical init on every process
    model = build_model(cfg).to(device)
    if cfg.run.channels_last:  # 4-D weights only: everything else keeps its layout
        model = model.to(memory_format=torch.channels_last)
    if cfg.run.init_from and not resume:
        _init_from(model, cfg.run.init_from, name, video=bool(cfg.data.frames))
    # a method may bring its own data source: labelled batches (supervised fine-tuning),
    # a pool it curates as it trains (CiT)
    if isinstance(model, OwnData):
        data = model.train_data(cfg, rank=env.rank, world_size=env.world_size, device=device)
    else:
        data = build_train_data(
            cfg.data, cfg.optim.batch_size, seed=cfg.run.seed, rank=env.rank,
            world_size=env.world_size, device=device, holdout=holds_out(cfg),
            text=isinstance(model, ImageText),
        )  # fmt: skip
    eff_batch = cfg.optim.batch_size * cfg.optim.accum_steps * env.world_size
    base_lr = cfg.optim.lr or cfg.optim.blr * eff_batch / 256
    if device.type == "cuda" and env.world_size > 1:  # BN statistics over the global batch
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # (CPU/gloo has no SyncBN)
    opt = build_optimizer(model, cfg.optim, base_lr)
    if cfg.run.budget_minutes and env.world_size > 1:
        raise ValueError(
            "run.budget_minutes is single-process only (clocks differ across ranks); "
            "pass run.budget_minutes=0 under torchrun"
        )
    lock = RunDirLock(run_dir) if env.is_main else contextlib.nullcontext()
    with lock:
        return _train(cfg, run_dir, name, model, opt, data, resume, env, device, eff_batch, base_lr)


def _train(cfg, run_dir, name, model, opt, data, resume, env, device, eff_batch, base_lr) -> dict:
    start, skipped = _prepare_run_dir(cfg, run_dir, name, model, opt, resume, env)
    net = DistributedDataParallel(model) if env.world_size > 1 else model
    step_fn = CompiledOrEager(net) if cfg.run.compile else net
    logger = RunLogger(run_dir, enabled=env.is_main, resume_step=start if resume else None)
    if env.is_main:
        if warning := space_warning(run_dir, model):
            log.warning(warning)
        if data.steps_per_epoch < 5:  # a tiny folder: schedules and evaluations are coarse
            log.warning("an epoch is only %d step(s) of %d images: lower optim.batch_size or add "
                        "images", data.steps_per_epoch, eff_batch)  # fmt: skip
        log.info(
            "%s: %d images/epoch, %d steps/epoch, effective batch %d, lr %.3g, %d processes",
            name, data.steps_per_epoch * eff_batch // cfg.optim.accum_steps, data.steps_per_epoch,
            eff_batch, base_lr, env.world_size,
        )  # fmt: skip
        if cfg.data.repeat_aug > 1:
            log.info("repeated augmentation: %d clips of each video, %d clips per effective "
                     "batch of %d videos", cfg.data.repeat_aug, eff_batch * cfg.data.repeat_aug,
                     eff_batch)  # fmt: skip
    with StopRequested() as stop:
        state = _loop(cfg, model, step_fn, opt, data, logger, stop, start, skipped, base_lr,
                      device, env)  # fmt: skip
    logger.close()
    if stop.signum is not None:
        if env.is_main:
            print(f"stopped by signal {stop.signum} at step {state.step}; checkpoint saved in "
                  f"{run_dir}; continue with: visrep train --resume {run_dir}")  # fmt: skip
        dist.cleanup()
        raise SystemExit(128 + stop.signum)
    metrics: dict[str, Any] = {}
    opt.state.clear()  # training is over and saved: its moments only cost the evaluation memory
    release_memory()
    if env.is_main:
        torch.manual_seed(cfg.run.seed)  # the run's architecture at its initialisation
        baseline = cfg.eval.final and cfg.eval.baselines and not isinstance(model, Classifier)
        init = build_model(cfg).backbone if baseline else None
        metrics = finish_run(cfg, model, run_dir, device, n_skipped=skipped + data.n_skipped,
                             init_backbone=init, training=_training_stats(cfg, state, start, env))  # fmt: skip
    dist.barrier()
    dist.cleanup()
    return metrics


def _training_stats(cfg: TrainConfig, s: LoopState, start: int, env) -> dict[str, Any]:
    """What the run trained: steps (of those planned), images seen, and this session's speed
    (the host's, for the report: a slow or busy host shows here)."""
    per_step = cfg.optim.batch_size * env.world_size * cfg.data.repeat_aug  # images or clips
    seconds = time.perf_counter() - s.started
    out = {"train_steps": s.step, "train_steps_planned": s.end,
           "train_images_seen": s.step * per_step,
           "train_minutes": round(seconds / 60, 2),  # this session (since the last --resume)
           "train_img_per_s": round((s.step - start) * per_step / max(seconds, 1e-9), 1)}  # fmt: skip
    if cfg.run.budget_minutes:
        out["train_budget_minutes"] = cfg.run.budget_minutes
    return out


def _init_from(model: nn.Module, source: str, name: str, video: bool) -> None:
    """Load another run's model weights (strict: same method and architecture); a video run
    from an image ViT run or export inflates its encoder (`runs.init_video_from_image`)."""
    if video and image_source(source):
        init_video_from_image(model.backbone, source)
        log.info("initialised the video ViT from the image ViT %s (patch embedding inflated)",
                 source)  # fmt: skip
        return
    state = load_checkpoint(source, map_location="cpu")
    load_model_weights(model, state, name, what=f"run.init_from={source}", target="this run "
                       "trains", fix="start from a run of the same method and backbone")  # fmt: skip
    log.info("initialised from %s (step %d)", source, int(state["step"]))


def _prepare_run_dir(cfg, run_dir, name, model, opt, resume, env) -> tuple[int, int]:
    """Load the checkpoint when resuming (returns its step and the unreadable samples it had
    counted); refuse to overwrite a run."""
    if resume:
        state = load_checkpoint(run_dir, map_location="cpu")
        what, target = str(run_dir / CHECKPOINT), f"{run_dir / CONFIG} describes"
        load_model_weights(model, state, name, what=what, target=target, fix=DIFFERENT_RUNS)
        try:
            opt.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as e:  # same model, another optimizer or param groups
            raise ValueError(f"{what}: its optimizer state does not fit the optimizer {target} "
                             f"({e}): {DIFFERENT_RUNS}") from e  # fmt: skip
        if env.is_main:
            save_json(to_dict(cfg, name), run_dir / CONFIG)  # with the resume's overrides
        return int(state["step"]), int(state.get("n_skipped", 0))
    if (run_dir / CHECKPOINT).exists():
        raise FileExistsError(
            f"{run_dir} already holds a checkpoint; continue it with "
            f"`visrep train --resume {run_dir}` or choose another run.out_dir"
        )
    if env.is_main:
        save_json(to_dict(cfg, name), run_dir / CONFIG)
    return 0, 0


def _loop(cfg, model, net, opt, data, logger, stop, start, skipped, base_lr, device, env):
    o, r = cfg.optim, cfg.run
    spe, accum = data.steps_per_epoch, o.accum_steps
    total = o.epochs * spe
    end = min(total, r.max_steps) if r.max_steps else total
    if end % accum:  # a partial accumulation window would never step nor be saved
        if env.is_main:
            log.warning("training ends at step %d, not %d: a multiple of optim.accum_steps=%d "
                        "(steps count micro-batches)", end - end % accum, end, accum)  # fmt: skip
        end -= end % accum
    min_lr = o.min_lr_ratio * base_lr if o.min_lr_ratio else o.min_lr
    amp = autocast_dtype(r.precision, device)
    s = LoopState(step=start, saved_step=start, skipped_before=skipped, end=end)
    if start >= end and env.is_main:
        log.warning("%s already reached step %d of %d: nothing left to train, evaluating the last "
                    "checkpoint again (raise optim.epochs or run.max_steps to train further: "
                    "visrep train --resume %s optim.epochs=N)", r.out_dir, start, end, r.out_dir)  # fmt: skip
    bar = tqdm(total=end, initial=start, disable=not (r.progress and env.is_main), desc="train",
               unit="step", dynamic_ncols=True)  # fmt: skip
    for batch in data.batches(start, end):
        step = s.step
        if step % accum == 0:
            epoch = _epoch(s, spe, o.epochs, r.budget_minutes)
            lr = cosine_lr(math.floor(epoch) if o.lr_per_epoch else epoch, base_lr,
                           o.warmup_epochs, o.epochs, min_lr, o.warmup_start)  # fmt: skip
            for g in opt.param_groups:
                g["lr"] = (base_lr if g.get("fixed_lr") else lr) * g.get("lr_scale", 1.0)
            if o.weight_decay_end:  # SparK: weight decay rises by a cosine over the run
                wd = cosine_weight_decay(epoch / o.epochs, o.weight_decay, o.weight_decay_end)
                for g in opt.param_groups:
                    g["weight_decay"] = wd * g.get("wd_scale", float(g["weight_decay"] > 0))
        # every draw inside the method (mask noise, ...) is a function of (seed, step, rank)
        torch.manual_seed(_step_seed(r.seed, step, env.rank))
        boundary = (step + 1) % accum == 0
        sync = contextlib.nullcontext() if boundary or env.world_size == 1 else net.no_sync()
        with sync, torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = net(batch)
            (out["loss"] / accum).backward()
        s.loss_sum += out["loss"].detach().float()
        s.unsaved_loss += out["loss"].detach().float()
        s.loss_n += 1
        s.seen += batch_size(batch)
        s.step = step + 1
        if (
            boundary
        ):  # the hook gets the progress of the next step (e/epochs: MoCo v3's momentum schedule)
            grad_norm = _optimizer_step(
                model, opt, o.clip_grad, _epoch(s, spe, o.epochs, r.budget_minutes) / o.epochs
            )
        bar.update(1)
        if s.step % r.log_every == 0 or s.step == end:
            _log_train(s, out, opt, logger, bar, spe, grad_norm if boundary else None)
        epoch_end = s.step % spe == 0
        if epoch_end and cfg.eval.every_epochs and (s.step // spe) % cfg.eval.every_epochs == 0:
            _periodic_eval(cfg, model, logger, s.step, device, env)
        stop_now, timed = dist.any_true(
            stop.signum is not None,
            time.perf_counter() - s.last_ckpt > r.ckpt_every_minutes * 60,
            device=device,
        )
        if boundary and (epoch_end or stop_now or timed or s.step == end):
            _save(cfg, model, opt, s, env, data)
        if stop_now and boundary:
            stop.signum = stop.signum or signal.SIGTERM
            break
        if boundary and r.budget_minutes and _epoch(s, spe, o.epochs, r.budget_minutes) >= o.epochs:
            _save(cfg, model, opt, s, env, data)
            break
    bar.close()
    return s


def _epoch(s: LoopState, spe: int, epochs: int, budget_minutes: float) -> float:
    """Fractional epoch driving the schedule: steps done; under a wall-clock budget, the
    larger of that and the share of the budget spent, so the run ends (with its schedule
    complete) at `optim.epochs` or when the budget is spent, whichever comes first. The
    clock restarts on `--resume`."""
    steps = s.step / spe
    if budget_minutes:
        return max(steps, epochs * (time.perf_counter() - s.started) / (budget_minutes * 60))
    return steps


def batch_size(batch: dict) -> int:
    """Images in a batch: {"images": [B, ...]} or multi-view {"views": [[B, ...], ...]}."""
    return batch["views"][0].shape[0] if "views" in batch else batch["images"].shape[0]


def _step_seed(seed: int, step: int, rank: int) -> int:
    return mix_seed(seed, step, rank, 1)


def _optimizer_step(model: nn.Module, opt, clip: float, progress: float) -> torch.Tensor | None:
    grad_norm = None
    if clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if isinstance(model, StepHook):
        model.on_step_end(progress)
    return grad_norm


def _log_train(s: LoopState, out: dict, opt, logger: RunLogger, bar, spe: int, grad_norm) -> None:
    loss = float(s.loss_sum) / max(s.loss_n, 1)
    if not math.isfinite(loss):
        raise _diverged(f"the loss became {loss} by step {s.step}", s, logger.path.parent)
    now = time.perf_counter()
    metrics = {
        "loss": loss,
        # the scheduled lr (a group's lr is it x its layer-decay scale when it has one)
        "lr": opt.param_groups[0]["lr"] / opt.param_groups[0].get("lr_scale", 1.0),
        "epoch": s.step / spe,
        "img_per_s": s.seen / max(now - s.interval_start, 1e-9),
    }
    metrics |= {k: v for k, v in out.items() if k != "loss" and torch.is_tensor(v) and v.ndim == 0}
    if grad_norm is not None:
        metrics["grad_norm"] = grad_norm
    logger.log(s.step, metrics)
    bar.set_postfix(
        loss=f"{loss:.4f}", lr=f"{metrics['lr']:.2e}", ips=f"{metrics['img_per_s']:.0f}"
    )
    s.loss_sum, s.loss_n, s.seen, s.interval_start = 0.0, 0, 0, now


def _periodic_eval(cfg, model, logger, step, device, env) -> None:
    if env.is_main:
        # bounded by periodic_limit; eval.budget_minutes is for the final evaluation
        ev = replace(cfg.eval, budget_minutes=0.0)
        if cfg.data.frames:  # the ρ study's online k-NN monitor, on clip features (below)
            m = _video_monitor(cfg, model, device)
        else:
            m = evaluate(model.backbone, cfg.data, ev, protocols=("knn",),
                         limit=cfg.eval.periodic_limit, device=device)  # fmt: skip
            m |= image_text_eval(cfg, model, device, limit=cfg.eval.periodic_limit)
        logger.log(step, {k: v for k, v in m.items() if isinstance(v, int | float)}, prefix="eval")
        motion = f", direction {m['knn_direction_top1']:.4f}" if "knn_direction_top1" in m else ""
        tqdm.write(f"step {step}: k-NN top-1 {m['knn_top1']:.4f}{motion} ({m['knn_n_test']} test "
                   f"{'videos' if cfg.data.frames else 'images'})"
                   + (f", zero-shot top-1 {m['zeroshot_top1']:.4f}" if "zeroshot_top1" in m else ""))  # fmt: skip
    dist.barrier()


def _video_monitor(cfg: TrainConfig, model: nn.Module, device) -> dict[str, Any]:
    """Clip-level k-NN on `eval.dataset` during training (the ρ study's online kNN monitor,
    SlowFast `contrastive.py` `eval_knn` and `tools/test_net.py`; Feichtenhofer et al., CVPR
    2021): the final evaluation's video k-NN (`report.video_eval`) on at most
    `eval.periodic_limit` train / test videos. Unlike the official monitor it reads the
    backbone's pooled features (what the final evaluation scores), not the projector output,
    and builds its bank from the evaluation videos' views, not from the training steps."""
    ev = cfg.eval
    cap = lambda n, default: min(n or default, ev.periodic_limit)  # noqa: E731
    ev = replace(ev, limit_train=cap(ev.limit_train, MOVING_EVAL[0]),
                 limit_test=cap(ev.limit_test, MOVING_EVAL[1]))  # fmt: skip
    return video_eval(replace(cfg, eval=ev), model.backbone, device) | {"knn_features": "backbone"}


def _diverged(what: str, s: LoopState, run_dir: Path) -> FloatingPointError:
    """The error of a diverged run; true also when it diverged before its first checkpoint."""
    if not (run_dir / CHECKPOINT).exists():
        return FloatingPointError(f"{what}, before the first checkpoint: nothing was saved. "
                                  "Lower the lr or clip gradients and start again "
                                  "(optim.blr=SMALLER or optim.clip_grad=1.0)")  # fmt: skip
    return FloatingPointError(
        f"{what}; {run_dir} keeps its checkpoint of step {s.saved_step}. Lower the lr or clip "
        f"gradients and continue: visrep train --resume {run_dir} optim.blr=SMALLER (or "
        "optim.clip_grad=1.0)"
    )


def _save(cfg, model, opt, s: LoopState, env, data) -> None:
    device = next(model.parameters()).device
    finite = torch.stack([torch.isfinite(p.detach()).all() for p in model.parameters()]).all()
    finite = finite & torch.isfinite(torch.as_tensor(s.unsaved_loss, device=device))
    if dist.any_true(not bool(finite), device=device)[0]:  # never overwrite good weights
        what = f"the loss or the weights became NaN/inf between steps {s.saved_step} and {s.step}"
        raise _diverged(what, s, Path(cfg.run.out_dir))
    spread = dist.param_spread(model)
    if spread > 0:
        log.warning("processes out of sync at step %d (parameter spread %.3g)", s.step, spread)
    if env.is_main:
        save_checkpoint(
            cfg.run.out_dir,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": s.step,
                "method": method_name(cfg.method),
                "n_skipped": s.skipped_before + data.n_skipped,
                "world_size": env.world_size,
                "param_spread": spread,
            },
        )
    s.last_ckpt, s.saved_step, s.unsaved_loss = time.perf_counter(), s.step, 0.0
    dist.barrier()
