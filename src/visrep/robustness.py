"""`visrep eval robustness` and `visrep eval msd`: corruption robustness of a run's
classifier and the Minimal Sample Distance between its training augmentation and each
corruption (Hendrycks and Dietterich, ICLR 2019; Mintun, Kirillov and Xie, NeurIPS 2021).

`visrep eval robustness --ckpt RUN [--baseline RUN] [--classifier auto|finetune|linear|knn]`
classifies the eval test split (`eval.limit_test`, a seeded stratified subset) under the 15
ImageNet-C corruptions (CIFAR-10-C constants for small images), the 4 held-out ones and
CIFAR-10-C-bar at 5 severities (`visrep.data.corruptions`), and writes RUN/robustness.json,
.md and .png (atomically): per-corruption errors, CE / mCE / relative mCE against the
baseline run (evaluated on the same images, or read from its own robustness.json when that
was computed with the same settings) — ImageNet-C's AlexNet when no baseline is named.
The classifier is a fine-tuned run's own head (`finetune`) or, on a run's frozen features,
the linear probe of `visrep eval linear` trained on the clean train split (`linear`, what
`auto` picks for a pre-training run) or the weighted k-NN (`knn`); both use
`eval.limit_train` train images.

`visrep eval msd --ckpt RUN | --augment SPEC --encoder RUN` embeds transforms with the
encoder run's frozen features over |D_S| clean training images and reports MSD and MMD of
the augmentation (the run's own: crop scale, flip, random erasing; or SPEC such as
"crop_scale=0.35,1 hflip=true reprob=0.25") against every corruption-severity
(`visrep.evals.msd`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visrep.capabilities import Classifier
from visrep.config import ConfigError, apply_overrides
from visrep.data.corruptions import BENCHMARK, SUITES
from visrep.data.preprocess import eval_preprocess, mean_std, model_preprocess
from visrep.data.sampling import stratified_subset
from visrep.evals.features import extract_features, extract_features_many
from visrep.evals.knn import knn_class_scores
from visrep.evals.linear import fit_linear_head
from visrep.evals.msd import (
    corruption_apply,
    corruption_seeds,
    distances,
    embed_families,
    training_apply,
    transform_embedding,
)
from visrep.evals.robustness import ce_table, corruption_errors, markdown, plot_errors
from visrep.evals.run import split_batches
from visrep.io import atomic_write_text
from visrep.runs import load_run, load_run_config

FILE = "robustness"
MSD_FILE = "msd.json"


def eval_split(cfg: Any, split: str, limit: int) -> tuple[Tensor, Tensor]:
    """The eval dataset's split as uint8 [N, C, S, S] images and labels (a seeded
    stratified subset of `limit`, 0 = all)."""
    batches, _ = split_batches(cfg.data, cfg.eval, split, limit)
    xs, ys = zip(*batches)
    x, y = torch.cat(xs), torch.cat(ys)
    if x.dtype != torch.uint8:
        x = (x * 255).round().clamp(0, 255).to(torch.uint8) if x.max() <= 1 else x.to(torch.uint8)
    return x, y


def linear_predictor(cfg: Any, model: Any, device: torch.device) -> tuple[Any, str]:
    """The linear probe of `visrep eval linear` (`visrep.evals.linear`, MAE's head on cached
    frozen features) trained on the clean eval train split (`eval.limit_train`) with the
    run's `eval.linear_*` settings and seed 0, as `visrep.evals.run.evaluate` trains it;
    images are encoded through the same path (`extract_features_many`, float16 rows), so
    its clean test error is `visrep eval linear`'s."""
    ev, pre = cfg.eval, eval_preprocess(cfg.data)
    batches, n = split_batches(cfg.data, ev, "train", ev.limit_train)
    feats, labels = extract_features_many(
        {"": model.backbone}, batches, preprocess=pre, device=device, progress=True, total=n,
        desc="linear probe features (train)", memory_mb=ev.feature_memory_mb,
    )  # fmt: skip
    head, _ = fit_linear_head(feats[""], labels, int(labels.max()) + 1, epochs=ev.linear_epochs,
                           batch_size=ev.linear_batch_size, blr=ev.linear_blr, device=device,
                           progress=True)  # fmt: skip

    def linear_predict(x: Tensor) -> Tensor:
        f, _ = extract_features_many({"": model.backbone}, [(x, torch.zeros(len(x)))],
                                     preprocess=pre, device=device)  # fmt: skip
        return head(f[""].to(device, torch.float32)).argmax(1)

    return linear_predict, (f"linear (blr={ev.linear_blr}, {ev.linear_epochs} epochs, "
                            f"train {len(labels)})")  # fmt: skip


def predictor(cfg: Any, model: Any, classifier: str, device: torch.device) -> tuple[Any, str]:
    """(uint8 images -> predicted labels, the classifier's name). `auto`: a fine-tuned run's
    own head, else the linear probe on frozen features (the protocol MAE reports for a
    frozen encoder; `knn` is the cheaper, training-free alternative)."""
    has_head = isinstance(model, Classifier)
    if classifier == "auto":
        classifier = "finetune" if has_head else "linear"
    pre = model_preprocess(cfg.data)
    if classifier == "finetune":
        if not has_head:
            raise ConfigError("--classifier finetune needs a fine-tuned run (visrep eval "
                              "finetune --ckpt RUN writes RUN/finetune); use --classifier "
                              "linear or knn for a pre-training run")  # fmt: skip
        return (lambda x: model.logits(pre(x.to(device).float())).argmax(1)), "finetune"
    if classifier == "linear":
        return linear_predictor(cfg, model, device)
    if classifier != "knn":
        raise ConfigError(f"--classifier must be auto, finetune, linear or knn, got {classifier!r}")
    ev = cfg.eval
    bank_x, bank_y = eval_split(cfg, "train", ev.limit_train)
    bank = extract_features(model.backbone, bank_x, preprocess=lambda x: pre(x * 255.0),
                            device=device, progress=True, desc="k-NN bank")  # fmt: skip

    def knn_predict(x: Tensor) -> Tensor:
        feats = model.backbone(pre(x.to(device).float()))
        return knn_class_scores(bank, bank_y, feats, k=ev.knn_k, temperature=ev.knn_temperature,
                                num_classes=int(bank_y.max()) + 1).argmax(1)  # fmt: skip

    return knn_predict, f"knn (k={ev.knn_k}, T={ev.knn_temperature}, bank {len(bank_y)})"


def evaluate_runs(
    runs: list[str], overrides: list[str], classifier: str, suites: list[str], seed: int,
    device: torch.device,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Errors of each run's classifier on the same test images and corrupted sets (the
    first run's eval split; every run must read the same dataset at the same size)."""
    loaded = [(r, *load_run(r, device)) for r in runs]
    cfgs = {r: apply_overrides(c, overrides) for r, c, _ in loaded}
    first = cfgs[runs[0]]
    for r, c in cfgs.items():
        if (c.eval.dataset, c.data.img_size, c.data.channels) != (
            first.eval.dataset, first.data.img_size, first.data.channels
        ):  # fmt: skip
            raise ConfigError(f"{r} evaluates on {c.eval.dataset} at {c.data.img_size} px, "
                              f"{runs[0]} on {first.eval.dataset} at {first.data.img_size} px: "
                              "compare runs of the same data")  # fmt: skip
    preds = {r: predictor(cfgs[r], m, classifier, device) for r, _, m in loaded}
    images, labels = eval_split(first, "test", first.eval.limit_test)
    names = [n for s in suites for n in SUITES[s]]
    with torch.no_grad():
        res = corruption_errors({r: p[0] for r, p in preds.items()}, images, labels, names,
                                base_seed=seed, progress=True)  # fmt: skip
    return {r: res[r] | {"run": str(r), "classifier": preds[r][1], "suites": suites,
                         "eval_dataset": first.eval.dataset, "img_size": first.data.img_size}
            for r in runs}  # fmt: skip


def _same_setting(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("n_test", "base_seed", "suites", "eval_dataset")
    return (
        all(a.get(k) == b.get(k) for k in keys)
        and a["classifier"].split()[0] == b["classifier"].split()[0]
    )


def write_outputs(res: dict[str, Any], base: dict[str, Any] | None, folder: Path,
                  name: str, baseline_name: str) -> dict[str, Any]:  # fmt: skip
    """Normalise `res` by `base` (None: AlexNet) and write FILE.json / .md / .png."""
    res["baseline"] = baseline_name
    res["table"] = ce_table(res["errors"], res["clean_error"],
                            base["errors"] if base else None,
                            base["clean_error"] if base else None)  # fmt: skip
    atomic_write_text(folder / f"{FILE}.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(folder / f"{FILE}.md",
                      markdown(res, f"Corruption robustness of {name}", baseline_name))  # fmt: skip
    runs = {Path(name).name: res} | (
        {f"{Path(baseline_name).name} (baseline)": base} if base else {}
    )
    plot_errors(runs, folder / f"{FILE}.png", title=f"{Path(name).name}: {res['classifier']}")
    return res


def run_robustness(
    ckpt: str, overrides: list[str], *, baseline: str = "", classifier: str = "auto",
    suites: str = "c,held_out,c_bar", seed: int = 0, out: str = "", device: str = "cpu",
) -> dict[str, Any]:  # fmt: skip
    """`visrep eval robustness`: evaluate, normalise by the baseline, write JSON/MD/PNG; the
    baseline's own errors go to BASELINE/robustness.json, reused when the settings match."""
    suite_list = [s for s in suites.split(",") if s]
    if not suite_list or any(s not in SUITES for s in suite_list):
        raise ConfigError(f"--suites takes a comma list of {sorted(SUITES)}, got {suites!r}")
    dev = torch.device(device)
    cached = Path(baseline) / f"{FILE}.json" if baseline else None
    base = json.loads(cached.read_text()) if cached and cached.is_file() else None
    runs = [ckpt, baseline] if baseline and base is None else [ckpt]
    res = evaluate_runs(runs, overrides, classifier, suite_list, seed, dev)
    if baseline and (base is None or not _same_setting(base, res[ckpt])):
        if base is not None:  # computed with other settings: evaluate it again
            res |= evaluate_runs([baseline], overrides, classifier, suite_list, seed, dev)
        base = write_outputs(res[baseline], res[baseline], Path(baseline), baseline, baseline)
    res = res[ckpt]
    return write_outputs(res, base, Path(out) if out else Path(ckpt), ckpt,
                         baseline or "AlexNet (ImageNet-C errors)")  # fmt: skip


# ---- MSD ----

AUGMENT_KEYS = {"crop_scale", "hflip", "reprob", "remode", "recount", "photometric"}


def parse_augment(spec: str) -> dict[str, Any]:
    """ "crop_scale=0.35,1 hflip=true reprob=0.25 recount=1 remode=pixel photometric=noise"
    -> kwargs of `training_apply` ("none" = no augmentation)."""
    kw: dict[str, Any] = {}
    for item in spec.split():
        if item == "none":
            continue
        key, sep, val = item.partition("=")
        if not sep or key not in AUGMENT_KEYS:
            raise ConfigError(f"--augment: {item!r} is not KEY=VALUE with KEY in "
                              f"{sorted(AUGMENT_KEYS)} (or 'none')")  # fmt: skip
        if key == "crop_scale":
            kw[key] = tuple(float(v) for v in val.split(","))
        elif key == "hflip":
            kw[key] = val.lower() in ("1", "true", "yes")
        else:
            kw[key] = {"reprob": float, "recount": int, "remode": str, "photometric": str}[key](val)
    return kw


def run_augmentation(cfg: Any) -> dict[str, Any]:
    """The training augmentation a classifier run used (its data and method config)."""
    m = cfg.method
    return {"crop_scale": tuple(cfg.data.crop_scale), "hflip": bool(cfg.data.hflip),
            "reprob": float(getattr(m, "reprob", 0.0)), "remode": getattr(m, "remode", "pixel"),
            "recount": int(getattr(m, "recount", 1)),
            "photometric": str(getattr(m, "photometric", ""))}  # fmt: skip


def run_msd(
    ckpts: str | list[str], *, encoder: str, augment: str = "", n_aug: int = 100,
    n_corr: int = 16, n_images: int = 32, severities: str = "1,2,3,4,5", seed: int = 0,
    out: str = "", device: str = "cpu",
) -> dict[str, Any]:  # fmt: skip
    """`visrep eval msd`: MSD/MMD of each run's (or SPEC's) augmentation to each of the 15
    corruptions at each severity, and per corruption averaged over severities; the
    corruptions are embedded once for all runs. Writes RUN/msd.json (or `out`) per run and
    returns the result of a single run, or {run: result} for a list."""
    runs = [ckpts] if isinstance(ckpts, str) else list(ckpts)
    if not encoder:
        raise ConfigError("--encoder RUN is required: the feature extractor f̂, a classifier "
                          "trained separately from the models compared (another seed)")  # fmt: skip
    if out and len(runs) > 1:
        raise ConfigError("--out names one file: leave it out to write RUN/msd.json per run")
    dev = torch.device(device)
    enc_cfg, enc_model = load_run(encoder, dev)
    enc_pre, backbone = model_preprocess(enc_cfg.data), enc_model.backbone

    def f_hat(x: Tensor) -> Tensor:  # features of the transformed images, normalised here
        return backbone(enc_pre(x.to(dev)))

    # D_S: clean training images, drawn once (a seeded stratified subset), no augmentation
    tr_x, tr_y = eval_split(enc_cfg, "train", 0)
    images = tr_x[stratified_subset(tr_y, n_images, seed)]
    sev = [int(s) for s in severities.split(",")]
    fams = {f"{n}-{s}": corruption_apply(n, s) for n in BENCHMARK for s in sev}
    with torch.no_grad():
        corr = embed_families(f_hat, images, fams, corruption_seeds(n_corr, seed), progress=True)
    results = {}
    for run in runs:
        cfg = load_run_config(run)
        aug_kw = parse_augment(augment) if augment else run_augmentation(cfg)
        mean, std = mean_std(cfg.data)
        apply = training_apply(cfg.data.img_size, mean, std, **aug_kw)
        with torch.no_grad():
            aug = transform_embedding(f_hat, images, apply,
                                      range(seed * 1_000_000, seed * 1_000_000 + n_aug),
                                      progress=True, desc=f"augmentation of {run}")  # fmt: skip
        table = distances(aug, corr)
        per = {n: {k: float(np.mean([table[f"{n}-{s}"][k] for s in sev]))
                   for k in ("msd", "mmd")} for n in BENCHMARK}  # fmt: skip
        res = {"run": run, "augmentation": aug_kw, "encoder": encoder, "n_aug": n_aug,
               "n_corr": n_corr, "n_images": n_images, "seed": seed, "severities": sev,
               "per_severity": table, "per_corruption": per}  # fmt: skip
        path = Path(out) if out else Path(run) / MSD_FILE
        atomic_write_text(path, json.dumps(res, indent=2, default=list) + "\n")
        results[run] = res
    return results[runs[0]] if isinstance(ckpts, str) else results
