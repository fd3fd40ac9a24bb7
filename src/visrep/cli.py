"""`visrep` command line: train | eval | export | sample | recipes | show | curate.

visrep train mae_fmnist optim.epochs=5 run.out_dir=runs/try   # a recipe + typed overrides
visrep show mae_fmnist --format yaml > run.yaml                # every key, as a file to edit
visrep train --config run.yaml optim.epochs=5                  # a YAML/JSON file + overrides
visrep train mae_fmnist data.dataset=/my/images data.channels=3 data.img_size=64
visrep train --resume runs/try                                 # continue after a kill
visrep eval knn --ckpt runs/try eval.knn_k=10
visrep export --ckpt runs/try --out exported/
visrep sample --ckpt runs/dit_fmnist --n 64 --cfg 1.5 --out samples/   # DiT: grid PNG + .npz
visrep export --ckpt runs/clip --out oc/ --format open_clip   # whole CLIP for open_clip
torchrun --nproc_per_node=2 -m visrep.cli train mae_fmnist     # DistributedDataParallel
visrep curate match pool/ --metadata metadata.json --out matched/  # MetaCLIP (docs/curation.md)
visrep graphs sweep --model mlp5 --graphs 48 --seeds 3 --out runs/graphs  # relational graphs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from visrep.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_file_text,
    describe_keys,
    read_config_file,
)
from visrep.configs import RECIPES, get_recipe, smoke
from visrep.curation.cli import add_curate_parser
from visrep.data import caption_shards
from visrep.version import __version__

# commands whose extra arguments are config overrides (`key=value` / `--key value`); the
# others refuse anything they do not know
TAKES_OVERRIDES = ("train", "eval", "curate")
# errors a user can cause and fix: printed as one line (FloatingPointError: a diverged run)
USER_ERRORS = (ConfigError, KeyError, OSError, ValueError, FloatingPointError)
# what `visrep train --resume RUN` may change: how long to train, how to run and evaluate;
# not the model or the data (batches would no longer replay exactly)
RESUME_KEYS = ("run.", "eval.", "optim.epochs=", "optim.blr=", "optim.lr=", "optim.clip_grad=",
               "data.num_workers=")  # fmt: skip
CONFIG_HELP = ("YAML or JSON file of config keys (nested or dotted, as `visrep show RECIPE "
               "--format yaml` writes); key=value overrides on the command line win")  # fmt: skip


def check_resume_overrides(overrides: list[str]) -> list[str]:
    """The overrides `--resume` accepts (RESUME_KEYS), or a ConfigError naming the others."""
    norm = [o.removeprefix("--") for o in overrides]
    if any("=" not in o for o in norm):
        raise ConfigError("with --resume pass overrides as key=value (e.g. optim.epochs=20)")
    bad = [o for o in norm if not o.startswith(RESUME_KEYS) or o.startswith("run.out_dir=")]
    if bad:
        raise ConfigError(
            f"--resume continues the run as it was built; it cannot change {', '.join(bad)}. "
            "It may change run.* (e.g. run.max_steps), eval.*, optim.epochs, optim.blr, "
            "optim.lr, optim.clip_grad and data.num_workers; start a new run for the rest"
        )
    return norm


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visrep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.add_argument("--version", action="version", version=f"visrep {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="pre-train with a recipe (see `visrep recipes`)")
    t.add_argument("recipe", nargs="?", help="recipe name")
    t.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint"
    )
    t.add_argument(
        "--smoke", action="store_true", help="tiny version of the recipe (seconds on a CPU)"
    )
    t.add_argument("--config", metavar="FILE", help=CONFIG_HELP + "; `recipe:` names the recipe")
    e = sub.add_parser("eval", help="evaluate a checkpoint's frozen features")
    e.add_argument(
        "protocol",
        choices=["knn", "linear", "all", "zeroshot", "retrieval", "finetune", "generation",
                 "detect", "robustness", "msd"],
    )  # fmt: skip
    e.add_argument("--ckpt", required=True, metavar="RUN_DIR")
    e.add_argument("--out", help="metrics JSON path (default RUN_DIR/eval_PROTOCOL.json)")
    e.add_argument("--device", default="auto")
    e.add_argument("--templates", default="imagenet", help="zeroshot: template set (unseen)")
    e.add_argument("--pairs", default="", help="retrieval: held-out pairs (shards, CSV, JSONL)")
    e.add_argument("--preset", default="", help="finetune: paper preset (visrep.finetune.PRESETS)")
    e.add_argument("--labels", default="", choices=["", "class", "direction"],
                   help="finetune of a video run: train and score on these labels (class = "
                   "appearance, direction = Moving Fashion-MNIST's motion); = method.labels")  # fmt: skip
    e.add_argument("--resume", action="store_true",
                   help="finetune / detect: continue that run (run.out_dir) from its checkpoint")  # fmt: skip
    e.add_argument("--data", default="", metavar="COCO_DIR",
                   help="detect: COCO-format folder (visrep data build-detection)")  # fmt: skip
    e.add_argument("--config", metavar="FILE", help=CONFIG_HELP + " (its `recipe:` is ignored)")
    _add_generation_args(e)
    _add_robustness_args(e)
    x = sub.add_parser("export", help="the backbone for timm, or a CLIP model for open_clip")
    x.add_argument("--ckpt", required=True, metavar="RUN_DIR")
    x.add_argument("--out", required=True, metavar="DIR")
    x.add_argument(
        "--format",
        choices=["timm", "open_clip", "timm_image"],
        default="timm",
        help="timm: the backbone (any method; a video ViT in visrep's video layout); "
        "open_clip: the whole CLIP model; timm_image: a video ViT deflated to a timm image ViT "
        "(docs/export.md)",
    )
    x.add_argument("--force", action="store_true", help="replace what --out already holds")
    _add_sample_parser(sub)
    sub.add_parser("recipes", help="list the recipes")
    s = sub.add_parser("show", help="print a recipe's resolved config and its valid keys")
    s.add_argument("recipe")
    s.add_argument("--format", choices=["text", "yaml", "json"], default="text",
                   help="yaml / json: a config file for `visrep train --config FILE`")  # fmt: skip
    add_curate_parser(sub)
    _add_data_parser(sub)
    _add_graphs_parser(sub)
    _add_viz_parser(sub)
    return p


def _add_generation_args(e) -> None:
    g = e.add_argument_group("generation (visrep.sample.evaluate_generation)")
    g.add_argument(
        "--reference",
        default="",
        metavar="RUN",
        help="run whose backbone features are compared (gen_reference_fmnist)",
    )
    g.add_argument("--encoder", default="", metavar="RUN",
                   help="generation: also score in this run's features; msd: the feature "
                   "extractor run")  # fmt: skip
    g.add_argument("--n", type=int, default=1000, help="samples (and real test images)")
    g.add_argument("--cfg", type=float, default=1.0, help="guidance scale")
    # shared with detect (optimizer steps); None = each protocol's default
    g.add_argument("--steps", default=None, help="sampling steps (respaced; default 100); "
                   "detect: optimizer steps (default: optim.epochs)")  # fmt: skip
    g.add_argument("--ddim", action="store_true", help="DDIM (eta 0) instead of DDPM")
    g.add_argument("--online", action="store_true", help="the online weights, not the EMA")
    g.add_argument("--seed", type=int, default=0, help="generation / msd")


def _add_robustness_args(e) -> None:
    r = e.add_argument_group("robustness / msd (visrep.robustness)")
    r.add_argument("--baseline", default="", metavar="RUN",
                   help="robustness: reference run for CE / mCE (default: ImageNet-C AlexNet)")  # fmt: skip
    r.add_argument("--classifier", default="auto", choices=["auto", "finetune", "linear", "knn"],
                   help="robustness: the run's fine-tuned head, or the linear probe / k-NN on "
                   "frozen features (auto: finetune for a fine-tuned run, else linear)")  # fmt: skip
    r.add_argument("--suites", default="c,held_out,c_bar",
                   help="robustness: corruption suites (c = the 15, held_out, c_bar)")  # fmt: skip
    r.add_argument("--augment", default="", metavar="SPEC",
                   help="msd: augmentation instead of the run's, e.g. 'crop_scale=0.35,1 "
                   "hflip=true reprob=0.25 photometric=noise' or 'none'; --encoder RUN is the "
                   "feature extractor (the paper's: a supervised classifier trained apart)")  # fmt: skip
    r.add_argument("--n-aug", type=int, default=100, help="msd: augmentation samples")
    r.add_argument("--n-corr", type=int, default=16, help="msd: samples per corruption-severity")
    r.add_argument("--n-images", type=int, default=32, help="msd: clean training images |D_S|")


def _add_viz_parser(sub) -> None:
    v = sub.add_parser("viz", help="pictures of a run (attention maps)")
    vsub = v.add_subparsers(dest="viz_command", required=True)
    a = vsub.add_parser("attention", help="ViT runs: class-token attention of the last block "
                        "per head and attention rollout over the input")  # fmt: skip
    a.add_argument("--ckpt", required=True, metavar="RUN_DIR")
    a.add_argument("--images", default="", metavar="DIR",
                   help="image folder (default: the first eval test images)")  # fmt: skip
    a.add_argument("--n", type=int, default=6, help="images drawn")
    a.add_argument("--out", default="", help="PNG path (default RUN_DIR/attention.png)")


def _add_graphs_parser(sub) -> None:
    g = sub.add_parser("graphs", help="relational graphs: train networks over WS-flex graphs")
    gsub = g.add_subparsers(dest="graphs_command", required=True)
    s = gsub.add_parser("sweep", help="relational MLP / ResNet over graphs covering (C, L)")
    s.add_argument("--model", choices=["mlp5", "resnet"], default="mlp5")
    s.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist (its idx files)")
    s.add_argument("--data-root", default="", help="Fashion-MNIST folder (default: the apt one)")
    s.add_argument("--graphs", type=int, default=48, help="WS-flex graphs (+ the complete graph)")
    s.add_argument("--seeds", type=int, default=3, help="training seeds 1..S per graph")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--nodes", type=int, default=16, help="graph nodes (channel groups)")
    s.add_argument("--out", default="runs/graphs_sweep", metavar="DIR")
    s.add_argument("--workers", type=int, default=1, help="processes training at once")
    s.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: auto)")
    s.add_argument("--limit-train", type=int, default=0, help="first N training images (0: all)")
    s.add_argument("--limit-test", type=int, default=0, help="first N test images (0: all)")
    s.add_argument("--grid", default="40,40,5", metavar="K,P,SEEDS",
                   help="candidate WS-flex sweep: k values, p values, graph seeds")  # fmt: skip


def _add_sample_parser(sub) -> None:
    g = sub.add_parser("sample", help="draw images from a generative run (DiT): grid PNG + .npz")
    g.add_argument("--ckpt", required=True, metavar="RUN_DIR")
    g.add_argument("--out", required=True, metavar="DIR", help="samples.png, samples.npz, .json")
    g.add_argument("--n", type=int, default=64, help="number of samples")
    g.add_argument("--cfg", type=float, default=1.0,
                   help="classifier-free guidance scale (1 = none; the paper's FID: 1.5)")  # fmt: skip
    g.add_argument("--steps", default="250",
                   help="sampling steps: the 1000-step process respaced (250, or ddim25, 10,15,20)")  # fmt: skip
    g.add_argument("--ddim", action="store_true", help="DDIM instead of ancestral DDPM")
    g.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (0: deterministic)")
    g.add_argument("--class", dest="class_id", type=int, default=None,
                   help="every sample of this class (default: classes 0, 1, ... in turn)")  # fmt: skip
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--online", action="store_true", help="the trained weights, not their EMA")
    g.add_argument("--batch", type=int, default=64, help="samples drawn at once")
    g.add_argument("--scale", type=int, default=1, help="PNG pixels per sample pixel")
    g.add_argument("--device", default="auto")
    g.add_argument("--force", action="store_true", help="write into a non-empty --out")


def _add_data_parser(sub) -> None:
    d = sub.add_parser("data", help="build training data (image-text shards, pseudo-BoW captions)")
    dsub = d.add_subparsers(dest="data_command", required=True)
    caption_shards.add_parser(dsub)  # visrep data build-captions
    b = dsub.add_parser("build-folder", help="a labelled colour image folder (train/ + val/) "  # build_folder.py
                        "from offline packages")  # fmt: skip
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--source", choices=["emoji"], default="emoji")
    b.add_argument("--emoji-root", default=caption_shards.EMOJI_ROOT,
                   help="npm pack emoji-datasource-google@16.0.0 output (.tgz or its folder)")  # fmt: skip
    b.add_argument("--val", type=float, default=0.2, help="fraction of each class in val/")
    b.add_argument("--seed", type=int, default=0)
    c = dsub.add_parser("build-detection", help="a COCO-format detection set: real cut-outs "  # build_detection.py
                        "pasted on real photos (or Fashion-MNIST items), boxes and masks")  # fmt: skip
    c.add_argument("--out", required=True, metavar="DIR")
    c.add_argument("--source", choices=["emoji", "tuxpaint", "fmnist"], default="emoji",
                   help="emoji: Noto emoji cut-outs; tuxpaint: Tux Paint photo stamps "
                   "(apt-get install tuxpaint-stamps-default); fmnist: Fashion-MNIST items "
                   "on black, the light variant")  # fmt: skip
    c.add_argument("--n-train", type=int, default=2000, help="training images")
    c.add_argument("--n-val", type=int, default=400, help="validation images")
    c.add_argument("--size", type=int, default=128, help="image side in pixels")
    c.add_argument("--min-objects", type=int, default=1)
    c.add_argument("--max-objects", type=int, default=4)
    c.add_argument("--emoji-root", default=caption_shards.EMOJI_ROOT,
                   help="npm pack emoji-datasource-google@16.0.0 output (.tgz or its folder)")  # fmt: skip
    c.add_argument("--tuxpaint-root", default=caption_shards.TUXPAINT_ROOT,
                   help="the stamps folder of tuxpaint-stamps-default")  # fmt: skip
    c.add_argument("--seed", type=int, default=0)
    v = dsub.add_parser("build-video", help="Moving Fashion-MNIST videos (train/ + val/ mp4 "  # build_video.py
                        "files, class and motion-direction labels)")  # fmt: skip
    v.add_argument("--out", required=True, metavar="DIR")
    v.add_argument("--n", type=int, default=4000, help="train videos (a multiple of 80 balances "
                   "class x direction)")  # fmt: skip
    v.add_argument("--n-val", type=int, default=-1, help="val videos (default: n / 5)")
    v.add_argument("--frames", type=int, default=32)
    v.add_argument("--size", type=int, default=64, help="canvas side in pixels")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--motion", choices=["wrap", "bounce"], default="wrap")
    v.add_argument("--codec", choices=["libx264", "mpeg4", "ffv1"], default="libx264")
    v.add_argument("--data-root", default="", help="Fashion-MNIST folder (default: the apt one)")
    p = dsub.add_parser(  # visrep data pseudo-bow (visrep.pseudo_bow)
        "pseudo-bow", help="caption uncaptioned images with a BoW model's top-k words"
    )
    p.add_argument("--ckpt", required=True, metavar="RUN_DIR", help="a (BoW-trained) CLIP run")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of uncaptioned images")
    p.add_argument("--out", required=True, metavar="JSONL")
    p.add_argument("--k", type=int, default=5, help="words per caption")
    p.add_argument("--vocab", default="", help="word list (one a line); default: training captions")
    p.add_argument("--device", default="cpu")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    if overrides and args.command not in TAKES_OVERRIDES:  # a mistyped flag is an error
        parser.error(f"unrecognized arguments for `visrep {args.command}`: {' '.join(overrides)}")
    try:
        return _dispatch(args, overrides)
    except BrokenPipeError:  # `visrep show X | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as err:  # one line that says what to do; --debug shows the traceback
        if args.debug:
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        if isinstance(err, OSError) and err.strerror and err.filename is None:
            msg = err.strerror
        print(f"visrep: error: {msg}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.command == "curate":
        from visrep.curation.cli import run_curate

        return run_curate(args, overrides)
    if args.command == "data" and args.data_command == "pseudo-bow":
        from visrep import pseudo_bow

        return pseudo_bow.run(args)
    if args.command == "data" and args.data_command == "build-folder":
        from visrep.data import build_folder

        return build_folder.run(args)
    if args.command == "data" and args.data_command == "build-detection":
        from visrep.data import build_detection

        return build_detection.run(args)
    if args.command == "data" and args.data_command == "build-video":
        from visrep.data import build_video

        return build_video.run(args)
    if args.command == "data":
        return caption_shards.run(args)
    if args.command == "graphs":
        from visrep import graphs_sweep

        return graphs_sweep.run(args)
    if args.command == "sample":
        from visrep import sample

        return sample.run(args)
    if args.command == "viz":  # visrep viz attention
        from visrep import viz

        out = viz.run_attention(args.ckpt, images=args.images, n=args.n, out=args.out)
        print(f"wrote {out}")
        return 0
    if args.command == "recipes":
        for name, fn in RECIPES.items():
            print(f"{name:24s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.command == "show":
        cfg = get_recipe(args.recipe)
        if args.format != "text":
            sys.stdout.write(config_file_text(cfg, args.format))
            return 0
        print(f"recipe {args.recipe} ({type(cfg.method).__name__}): every key, its type, "
              "the recipe's value and what it means; override with key=value\n")  # fmt: skip
        for key, kind, value, note in describe_keys(cfg):
            print(f"{key:30s} {kind:18s} = {value!r:24s}" + (f"  # {note}" if note else ""))
        return 0
    if args.command == "train":
        cfg = train_config(args, overrides)
        from visrep.loop import train

        metrics = train(cfg, resume=bool(args.resume))
        if metrics:
            print(json.dumps(metrics, indent=2))
        return 0
    if args.command == "eval":
        return _eval(args, overrides)
    if args.command == "export" and args.format == "open_clip":
        from visrep.export import (
            OPEN_CLIP_CONFIG,
            OPEN_CLIP_WEIGHTS,
            export_open_clip,
            prepare_out_dir,
        )

        prepare_out_dir(Path(args.out), args.force)
        export_open_clip(args.ckpt, args.out)
        print(f"wrote {Path(args.out) / OPEN_CLIP_WEIGHTS} and {OPEN_CLIP_CONFIG}; load with "
              f"open_clip.create_model('local-dir:{Path(args.out).resolve()}')")  # fmt: skip
        return 0
    if args.command == "export":
        from visrep.export import export_backbone

        config = export_backbone(args.ckpt, args.out, force=args.force,
                                 image=args.format == "timm_image")  # fmt: skip
        out = Path(args.out).resolve()
        # a video export's config block -> (what, its loader in visrep.backbones.video_export)
        loaders = {"video_vit": ("video ViT", "load_video_vit"),
                   "slow_resnet": ("Slow-only ResNet", "load_slow_resnet"),
                   "video_mvit": ("MViTv2", "load_video_mvit")}  # fmt: skip
        key = next((k for k in loaders if k in config), None)
        if key:
            what, fn = loaders[key]
            print(f"wrote {out}: config.json, model.safetensors, README.md ({what}); load "
                  f"with visrep.backbones.video_export.{fn}('{out}')")  # fmt: skip
            return 0
        print(f"wrote {out}: config.json, model.safetensors, README.md "
              f"({config['architecture']}); load with timm.create_model("
              f"'local-dir:{out}', pretrained=True)")  # fmt: skip
        return 0
    raise AssertionError(args.command)


def train_config(args: argparse.Namespace, overrides: list[str]) -> TrainConfig:
    """The config `visrep train` runs: the recipe (or --resume's saved config), then the keys
    of the --config file, then the command line's overrides (the last value of a key wins)."""
    if args.recipe and "=" in args.recipe:  # argparse took the first override for the recipe
        args.recipe, overrides = None, [args.recipe, *overrides]
    file_recipe, file_overrides = read_config_file(args.config) if args.config else ("", [])
    overrides = [*file_overrides, *overrides]
    if args.resume:
        if args.recipe or file_recipe:
            raise ConfigError("--resume takes the run's saved config; drop the recipe")
        from visrep.runs import load_run_config

        changes = [*check_resume_overrides(overrides), f"run.out_dir={args.resume}"]
        return apply_overrides(load_run_config(args.resume), changes)
    recipe = args.recipe or file_recipe
    if not recipe:
        raise ConfigError("name a recipe (see `visrep recipes`; or `recipe:` in the --config "
                          "file) or pass --resume RUN_DIR")  # fmt: skip
    cfg = get_recipe(recipe)
    return apply_overrides(smoke(cfg) if args.smoke else cfg, overrides)


def _eval(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.config:  # the same keys as the command line's, which win; the run is the recipe
        overrides = [*read_config_file(args.config)[1], *overrides]
    if args.labels and args.protocol != "finetune":
        raise ConfigError(f"--labels is for `visrep eval finetune` (method.labels), not "
                          f"{args.protocol}: the video k-NN and linear probe report every "
                          "label family the set has")  # fmt: skip
    if args.protocol == "generation":  # samples vs real images (visrep.sample)
        from visrep import sample

        args.steps = "100" if args.steps is None else args.steps
        return sample.run_eval(args)
    if args.protocol == "detect":  # Mask R-CNN on the backbone (visrep.detect)
        from visrep.detect import run_detect_cli

        if not args.data and not args.resume:
            raise ConfigError("visrep eval detect needs --data COCO_DIR (a COCO-format folder, "
                              "e.g. from `visrep data build-detection --out DIR`)")  # fmt: skip
        metrics = run_detect_cli(args.ckpt, args.data, overrides, steps=int(args.steps or 0),
                                 out=args.out, device=args.device, resume=args.resume)  # fmt: skip
        print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=2))
        return 0
    if args.protocol in ("robustness", "msd"):  # corruptions (visrep.robustness)
        from visrep import robustness
        from visrep.device import resolve_device

        dev = str(resolve_device(args.device))
        if args.protocol == "msd":
            res = robustness.run_msd(
                args.ckpt, encoder=args.encoder, augment=args.augment, n_aug=args.n_aug,
                n_corr=args.n_corr, n_images=args.n_images, seed=args.seed, out=args.out or "",
                device=dev,
            )  # fmt: skip
            print(json.dumps(res["per_corruption"], indent=2))
            return 0
        res = robustness.run_robustness(
            args.ckpt, overrides, baseline=args.baseline, classifier=args.classifier,
            suites=args.suites, seed=args.seed, out=args.out or "", device=dev,
        )  # fmt: skip
        print(json.dumps({k: res["table"][k] for k in ("clean_error", "mce", "relative_mce",
                          "mean_corruption_error") if k in res["table"]}, indent=2))  # fmt: skip
        return 0
    if args.protocol == "finetune":  # trains the whole backbone (visrep.finetune)
        from visrep.finetune import run_finetune_cli

        labels = [f"method.labels={args.labels}"] if args.labels else []
        metrics = run_finetune_cli(
            args.ckpt, [*labels, *overrides], preset=args.preset, out=args.out,
            device=args.device, resume=args.resume,
        )  # fmt: skip
        print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=2))
        return 0
    from visrep.device import resolve_device
    from visrep.evals.run import evaluate
    from visrep.io import atomic_write_text
    from visrep.runs import load_run

    device = resolve_device(args.device)
    cfg, model = load_run(args.ckpt, device)
    cfg = apply_overrides(cfg, overrides)
    if args.protocol == "retrieval":  # image-text runs: R@1/5/10 on held-out pairs
        from visrep.evals.retrieval import run_retrieval

        metrics = run_retrieval(cfg, model, device, args.pairs)
    elif not cfg.eval.dataset:
        raise ConfigError(
            "this run has no evaluation dataset; pass eval.dataset=fashion_mnist or a folder"
        )
    elif args.protocol == "zeroshot":  # image-text runs: Fashion-MNIST test, unseen templates
        from visrep.evals.zeroshot import run_zeroshot

        metrics = run_zeroshot(cfg, model, device, args.templates)
    elif cfg.data.frames:  # a video run: video k-NN / linear probe (clips x views averaged)
        if args.protocol not in ("knn", "linear", "all"):
            raise ConfigError(f"video runs have the k-NN, linear and finetune protocols, not "
                              f"{args.protocol}: visrep eval knn --ckpt {args.ckpt}")  # fmt: skip
        from visrep.report import video_eval

        protocols = ("knn", "linear") if args.protocol == "all" else (args.protocol,)
        metrics = video_eval(cfg, model.backbone, device, protocols=protocols)
    else:
        protocols = ("knn", "linear") if args.protocol == "all" else (args.protocol,)
        metrics = evaluate(
            model.backbone, cfg.data, cfg.eval, protocols=protocols, device=device, progress=True
        )
    out = Path(args.out) if args.out else Path(args.ckpt) / f"eval_{args.protocol}.json"
    print(json.dumps(metrics, indent=2))  # first: a failed write below loses nothing
    try:
        atomic_write_text(out, json.dumps(metrics, indent=2) + "\n")
    except OSError as e:
        raise OSError(f"could not write {out} ({e.strerror or e}); the metrics are printed "
                      "above; pass --out to a writable path") from e  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
