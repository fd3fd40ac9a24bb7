"""reconstruction.png: original | masked | raw prediction | reconstruction for every method
that reconstructs (MAE, FCMAE, SparK), and a caption that says what each panel is."""

import pytest
import torch
from conftest import colour_folder
from PIL import Image

from visrep.config import replace, save_json, to_dict
from visrep.configs import get_recipe, smoke
from visrep.report import RECONSTRUCTION_PANELS, save_reconstruction, write_report
from visrep.runs import build_model


@pytest.mark.parametrize("recipe", ["mae_fmnist", "fcmae_fmnist", "spark_fmnist"])
def test_the_picture_has_a_raw_prediction_panel_and_the_caption_says_what_it_is(recipe, tmp_path):
    folder = colour_folder(tmp_path / "images", labelled=False)
    cfg = replace(smoke(get_recipe(recipe)), **{"data.dataset": str(folder), "data.channels": 3,
                                                "eval.dataset": ""})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    n = 4
    name = save_reconstruction(cfg, model, tmp_path / "reconstruction.png", "cpu", n=n)
    with Image.open(tmp_path / name) as im:
        width, height = im.size
    # 1.6-inch panels at 100 dpi: one row per image, one column per panel (4, was 3)
    assert len(RECONSTRUCTION_PANELS) == 4 and "prediction" in RECONSTRUCTION_PANELS
    assert (width, height) == (4 * 160, n * 160)
    save_json(to_dict(cfg, "any"), tmp_path / "config.json")
    write_report(cfg, {}, {"reconstruction": name}, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "the raw prediction, the model's output on every patch as is" in report
    assert "true mean and variance of that masked patch" in report
    norm = getattr(cfg.method, "norm_pix_loss", True)
    assert ("target: normalised pixels" if norm else "target: raw pixels") in report
