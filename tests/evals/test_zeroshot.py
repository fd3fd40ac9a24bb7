"""Zero-shot classifier (as SLIP `eval_zeroshot.py`) and retrieval metrics against their
formulas."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist
from torch import nn

from visrep.data.tokenizer import tokenize
from visrep.evals.features import topk_accuracy
from visrep.evals.retrieval import retrieval_recall
from visrep.evals.zeroshot import text_classifier, zeroshot


class BagOfIds(nn.Module):
    """A fake CLIP: text embedding = fixed random vector per token id summed; image
    embedding = the image flattened."""

    def __init__(self, dim=4):
        super().__init__()
        self.table = torch.randn(49408, dim, generator=torch.Generator().manual_seed(0))

    def encode_text(self, tokens):
        return self.table[tokens].sum(1)

    def encode_image(self, x):
        return x.flatten(1)


def test_class_embedding_is_renormalised_mean_of_normalised_templates():
    m = BagOfIds()
    names, temps = ["cat", "dog"], ["a {}.", "art of the {}."]
    w = text_classifier(m, names, temps)  # [E, K]
    for k, name in enumerate(names):
        e = F.normalize(m.encode_text(tokenize([t.format(name) for t in temps])), dim=-1)
        torch.testing.assert_close(w[:, k], F.normalize(e.mean(0), dim=0))
    torch.testing.assert_close(w.norm(dim=0), torch.ones(2))


def test_zeroshot_recovers_classes_when_images_equal_their_class_embedding():
    m = BagOfIds()
    names, temps = ["cat", "dog", "bird"], ["a {}.", "itap of a {}."]
    w = text_classifier(m, names, temps)
    labels = torch.tensor([2, 0, 1, 1])
    images = w.T[labels] * 3  # [4, E]: scale does not matter (cosine)
    out = zeroshot(m, images, labels, names, temps, preprocess=lambda x: x, batch_size=3)
    assert out["zeroshot_top1"] == 1.0 and out["zeroshot_templates"] == 2
    assert abs(out["zeroshot_chance"] - 1 / 3) < 1e-9


def test_topk_and_retrieval_recall():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.5], [0.2, 0.3, 0.1]])
    acc = topk_accuracy(logits, torch.tensor([1, 2, 0]), ks=(1, 2))
    # row 0: hit at 1; row 1: label 2 is 2nd; row 2: label 0 is 2nd
    assert acc["top1"] == pytest.approx(1 / 3) and acc["top2"] == 1.0
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    txt = F.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.7, 0.7]]), dim=1)
    r = retrieval_recall(img, txt, torch.arange(3), ks=(1, 2, 3))  # one caption per image
    # image 0 -> best text 1 (rank 1), image 1 -> text 1 is 3rd, image 2 -> text 2 first
    assert r["i2t_R@1"] == pytest.approx(1 / 3) and r["i2t_R@2"] == pytest.approx(2 / 3)
    assert r["i2t_R@3"] == 1.0
    assert r["t2i_R@1"] == pytest.approx(
        2 / 3
    )  # text 0 -> image 0 first, text 1 -> image 0, text 2 -> image 2


@requires_fmnist
def test_cli_zeroshot_on_a_smoke_clip_run(tmp_path, capsys):
    from visrep.cli import main
    from visrep.config import replace
    from visrep.configs import get_recipe, smoke
    from visrep.loop import train

    run = tmp_path / "run"
    cfg = replace(smoke(get_recipe("clip_fmnist")), **{"run.out_dir": str(run), "run.threads": 1,
                  "eval.final": False, "eval.every_epochs": 0, "optim.epochs": 1})  # fmt: skip
    train(cfg)
    assert main(["eval", "zeroshot", "--ckpt", str(run), "eval.limit_test=300"]) == 0
    got = json.loads((run / "eval_zeroshot.json").read_text())
    assert 0 <= got["zeroshot_top1"] <= got["zeroshot_top5"] <= 1
    assert got["split"] == "test" and got["template_set"] == "imagenet"
    assert got["zeroshot_templates"] == 7 and got["zeroshot_n_test"] == 300
