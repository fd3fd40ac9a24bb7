"""The Python entry points: `visrep.loop` (a folder in, a trained and exported encoder out,
in one call) and `visrep.load` (a run or an export -> backbone + its preprocessing)."""

from __future__ import annotations

import torch
from conftest import colour_folder, requires_fmnist
from PIL import Image

import visrep


def test_version_is_the_installed_one():
    from importlib.metadata import version

    assert visrep.__version__ == version("visrep")


@requires_fmnist  # the smoke-sized overrides below; no Fashion-MNIST image is used
def test_train_on_a_folder_then_load_the_run_and_the_export(tmp_path):
    folder = colour_folder(tmp_path / "images", split=True)
    run, export = tmp_path / "run", tmp_path / "export"
    metrics = visrep.train(
        "mae_own", data=str(folder), out=str(run), epochs=1, export=str(export),
        overrides={"optim.batch_size": 6, "data.img_size": 32, "backbone.depth": 1,
                   "eval.linear_epochs": 2, "eval.every_epochs": 0, "run.threads": 1},
    )  # fmt: skip
    assert "knn_top1" in metrics and "raw_knn_top1" in metrics
    image = Image.open(next((folder / "val" / "red").iterdir()))
    feats = []
    for path in (run, export):
        model, transform = visrep.load(path)
        x = transform(image)
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        with torch.no_grad():
            feats.append(model(x.unsqueeze(0)))
    torch.testing.assert_close(feats[0], feats[1], rtol=0, atol=0)
    more = visrep.train(out=str(run), resume=True, epochs=2)
    assert "knn_top1" in more
