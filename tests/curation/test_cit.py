"""CiT (Curation in Training): the selection rule of the paper's Algorithm 1 on hand-made
embeddings, the chunked embedding pass, rounds at the configured interval with the current
text tower, and exact resume of the curated subset."""

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist

from visrep.backbones import build_backbone
from visrep.config import BackboneConfig, DataConfig, replace
from visrep.curation.cit import (
    PoolStream,
    curate_round,
    embed_captions,
    max_similarity,
    metadata_embedding,
    select,
)
from visrep.data.cit_pool import CiTData
from visrep.evals.zeroshot import text_classifier
from visrep.methods.cit import CiT, CiTConfig

TINY = dict(embed_dim=16, text_width=16, text_layers=1, text_heads=2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a second OpenMP thread only adds spin-waiting on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the rule (CiT §3.2): strict threshold, γ fallback, ties ------------------------------


def test_threshold_is_strict_and_indices_ascending():
    s = torch.tensor([0.9, 0.5, 0.51, 0.2, 0.7])
    assert select(s, 0.5, 0.0).tolist() == [0, 2, 4]  # 0.5 itself is not kept (`>`)
    assert select(s, 0.95, 0.0).tolist() == []  # γ = 0: nothing is forced


def test_min_ratio_fallback_keeps_the_top_floor_gamma_n():
    s = torch.tensor([0.1, 0.8, 0.3, 0.9, 0.2, 0.4, 0.0, 0.6, 0.5, 0.7])
    # 1 of 10 pass t = 0.85 (ratio 0.1 < γ 0.35): keep the ⌊3.5⌋ = 3 best instead
    assert select(s, 0.85, 0.35).tolist() == [1, 3, 9]
    # ratio 0.1 ≥ γ 0.1: the threshold decides, no fallback
    assert select(s, 0.85, 0.1).tolist() == [3]
    # 5 pass (ratio 0.5 ≥ γ): the threshold keeps all 5, more than ⌊γN⌋
    assert select(s, 0.45, 0.35).tolist() == [1, 3, 7, 8, 9]


def test_fallback_ties_go_to_the_earlier_position():
    s = torch.tensor([0.3, 0.5, 0.1, 0.5, 0.5, 0.2])
    assert select(s, 0.9, 0.34).tolist() == [1, 3]  # ⌊2.04⌋ = 2 of the three 0.5s


def test_max_similarity_on_hand_made_embeddings():
    meta = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two classes
    text = F.normalize(torch.tensor([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.2]]), dim=-1)
    expect = [2**-0.5, 1.0, 0.2 / (1.04**0.5)]
    torch.testing.assert_close(max_similarity(text, meta), torch.tensor(expect))


# --- a round (CiT §3.3): scan the pool stream until the budget is kept ---------------------


def test_round_keeps_the_first_budget_in_scan_order_and_moves_past_whole_chunks():
    stream = PoolStream(10, seed=0)
    scores_of = lambda idx: (idx % 2 == 0).float()  # noqa: E731  even pool ids pass t = 0.5
    r = curate_round(scores_of, stream, cursor=0, budget=4, chunk=3, threshold=0.5, min_ratio=0)
    order = stream.take(0, r.cursor)
    assert r.indices.tolist() == [i for i in order.tolist() if i % 2 == 0][:4]
    assert r.cursor % 3 == 0 and r.scanned == r.cursor and len(r.indices) == 4
    assert r.passed == int((order % 2 == 0).sum())
    nxt = curate_round(scores_of, stream, r.cursor, 4, 3, 0.5, 0)  # the stream continues
    assert nxt.cursor > r.cursor


def test_pool_stream_visits_each_pair_once_per_pass_and_is_seeded():
    a, b = PoolStream(7, seed=3), PoolStream(7, seed=3)
    x = a.take(0, 21)
    assert torch.equal(x, torch.cat([b.take(0, 10), b.take(10, 11)]))
    for p in range(3):
        assert sorted(x[7 * p : 7 * p + 7].tolist()) == list(range(7))
    assert not torch.equal(x[:7], x[7:14])  # a new permutation each pass


def test_a_pass_that_keeps_nothing_is_an_error_not_a_hang():
    never = lambda idx: torch.zeros(len(idx))  # noqa: E731
    with pytest.raises(ValueError, match="threshold"):
        curate_round(never, PoolStream(5, 0), 0, budget=2, chunk=4, threshold=0.5, min_ratio=0)


# --- embeddings ----------------------------------------------------------------------------


def _model(**kw) -> CiT:
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig(name="vit_tiny", patch_size=4, depth=1),
                        DataConfig(img_size=8, channels=1))  # fmt: skip
    return CiT(CiTConfig(**TINY, **kw), bb).eval()


CAPTIONS = ["a photo of a sneaker.", "A frog.", "a bag.", "Tux and spider - two friends.",
            "an image of a dress.", "A blue fedora.", "a product photo of a coat."]  # fmt: skip


def test_chunked_embedding_equals_unchunked():
    m = _model()
    whole = embed_captions(m.curation_features, CAPTIONS, chunk=len(CAPTIONS))
    for chunk in (1, 2, 3):
        torch.testing.assert_close(embed_captions(m.curation_features, CAPTIONS, chunk), whole,
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
    assert whole.shape == (7, 16) and torch.allclose(whole.norm(dim=1), torch.ones(7))


def test_metadata_embedding_is_the_zero_shot_classifier_in_the_projected_space():
    m = _model(project=True)
    names, temps = ["sneaker", "bag", "coat"], ["{}", "a photo of a {}."]
    torch.testing.assert_close(metadata_embedding(m.curation_features, names, temps),
                               text_classifier(m, names, temps).T, atol=1e-6, rtol=1e-6)  # fmt: skip


def test_metadata_template_sets_expand_by_name():
    from visrep.data.templates import IMAGENET_TEMPLATES

    m = _model(metadata_templates=("{}", "imagenet"))
    assert m.templates == ["{}", *IMAGENET_TEMPLATES] and len(m.entries) == 10
    with pytest.raises(ValueError, match="template set"):
        _model(metadata_templates=("no such set",))


def test_freeze_image_locks_the_image_tower_only():
    m = _model(freeze_image=True)
    assert not any(p.requires_grad for p in m.backbone.parameters())
    assert not m.image_projection.requires_grad
    assert all(p.requires_grad for p in m.text.parameters()) and m.logit_scale.requires_grad


# --- rounds in the training data source ------------------------------------------------------


class FakePool:
    """Captions from CAPTIONS, blank 8 px images; `sources` mark Fashion-MNIST-like ones."""

    def __init__(self, n: int = 28) -> None:
        self.captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
        self.sources = ["fmnist" if i % len(CAPTIONS) in (0, 2, 4, 6) else "tux" for i in range(n)]
        self.n_skipped = 0

    def __len__(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> torch.Tensor:
        return torch.full((1, 8, 8), i * 9 % 256, dtype=torch.uint8)


def _data(model, pool=None) -> CiTData:
    data = DataConfig(img_size=8, channels=1, crop_scale=(0.5, 1.0), hflip=False)
    return CiTData(model, data, batch_size=2, seed=0, pool=pool or FakePool())


def test_curation_runs_every_s_steps_with_the_current_text_tower():
    m = _model(curate_every=3, threshold=0.0, min_ratio=0.5)
    data, seen = _data(m), []
    real = m.curate

    def spy(d, r, budget):
        seen.append((r, budget, m.text.token_embedding.weight.sum().item()))
        real(d, r, budget)

    m.curate = spy
    for step, batch in enumerate(data.batches(0, 9)):
        assert batch["images"].shape == (2, 1, 8, 8) and batch["tokens"].shape == (2, 77)
        assert m.cit_round == step // 3
        with torch.no_grad():  # stands in for an optimizer step on the text tower
            m.text.token_embedding.weight.add_(0.01)
    assert [(r, b) for r, b, _ in seen] == [(0, 6), (1, 6), (2, 6)]
    assert len({w for *_, w in seen}) == 3  # each round saw the tower of its own step
    assert m.cit_stats["cit_kept"] == 6 and "cit_share_fmnist" in m.cit_stats


def test_the_kept_subset_changes_with_the_text_tower():
    a, b = _model(threshold=2.0, min_ratio=0.3), _model(threshold=2.0, min_ratio=0.3)
    pool = FakePool()
    a.curate(_data(a, pool), 0, budget=8)
    again = _model(threshold=2.0, min_ratio=0.3)
    again.curate(_data(again, pool), 0, budget=8)
    assert torch.equal(a.cit_indices, again.cit_indices)  # a function of the weights
    with torch.no_grad():
        b.text.token_embedding.weight.normal_(generator=torch.Generator().manual_seed(1))
    b.curate(_data(b, pool), 0, budget=8)
    assert not torch.equal(a.cit_indices, b.cit_indices)


def test_state_dict_carries_the_subset_and_resume_mid_round_does_not_recurate():
    m = _model(curate_every=4, threshold=0.0, min_ratio=0.5)
    first = [b["tokens"] for b in _data(m).batches(0, 6)]  # rounds 0 and 1 (steps 4, 5)
    state = m.state_dict()
    back = _model(curate_every=4, threshold=0.0, min_ratio=0.5)
    back.load_state_dict(state)
    assert back.cit_round == 1 and torch.equal(back.cit_indices, m.cit_indices)
    back.curate = lambda *a: pytest.fail("resumed mid-round must reuse the stored subset")
    rest = [b["tokens"] for b in _data(back).batches(6, 8)]
    cont = [b["tokens"] for b in _data(m).batches(6, 8)]
    assert all(torch.equal(x, y) for x, y in zip(rest, cont)) and len(first) == 6


def test_resume_at_a_round_boundary_recurates_from_the_stored_stream_position():
    m = _model(curate_every=4, threshold=0.0, min_ratio=0.5)
    list(_data(m).batches(0, 4))  # round 0; the checkpoint after step 4 holds it
    back = _model(curate_every=4, threshold=0.0, min_ratio=0.5)
    back.load_state_dict(m.state_dict())
    resumed = [b["tokens"] for b in _data(back).batches(4, 8)]  # curates round 1 anew
    cont = [b["tokens"] for b in _data(m).batches(4, 8)]
    assert back.cit_round == m.cit_round == 1 and back.cit_cursor == m.cit_cursor
    assert torch.equal(back.cit_indices, m.cit_indices)
    assert all(torch.equal(x, y) for x, y in zip(resumed, cont))


# --- the training loop: exact resume ---------------------------------------------------------


@pytest.mark.slow  # 3 smoke runs per case, ~20 s each on this CPU
@requires_fmnist
@pytest.mark.parametrize("stop", [6, 8])  # mid-round, and at a round boundary (curate_every 4)
def test_resume_reproduces_the_subset_and_the_weights(tmp_path, stop):
    from visrep.checkpoint import load_checkpoint
    from visrep.configs import get_recipe, smoke
    from visrep.loop import train

    cfg = replace(smoke(get_recipe("cit_fmnist")), **{"eval.final": False, "eval.every_epochs": 0,
                  "run.threads": 1, "run.out_dir": str(tmp_path / "full")})  # fmt: skip
    train(cfg)
    part = replace(cfg, **{"run.out_dir": str(tmp_path / "part"), "run.max_steps": stop})
    train(part)
    assert load_checkpoint(tmp_path / "part")["step"] == stop
    train(replace(part, **{"run.max_steps": 0}), resume=True)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    assert a["step"] == b["step"] == 16
    ea, eb = a["model"]["_extra_state"], b["model"]["_extra_state"]
    assert ea["round"] == eb["round"] == 3 and ea["cursor"] == eb["cursor"]
    assert torch.equal(ea["indices"], eb["indices"])
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
