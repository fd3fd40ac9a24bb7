"""Block-wise (BEiT-style) masking as MaskFeat uses it (SlowFast `slowfast/datasets/transform.py`
`MaskingGenerator`)."""

import math
import random

import pytest
import torch

from visrep.parts.masking import block_mask, block_masks, num_block_masked

LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))


def reference_block_mask(h, w, num_masked, rng, min_patches, max_patches=None):
    """The generator written out from the spec with plain lists, cell by cell."""
    max_patches = num_masked if max_patches is None else max_patches
    mask = [[0] * w for _ in range(h)]
    count = 0
    while count < num_masked:
        room = min(num_masked - count, max_patches)
        delta = 0
        for _ in range(10):
            area = rng.uniform(min_patches, room)
            aspect = math.exp(rng.uniform(*LOG_ASPECT))
            rh, rw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if rw < w and rh < h:
                top, left = rng.randint(0, h - rh), rng.randint(0, w - rw)
                cells = [(i, j) for i in range(top, top + rh) for j in range(left, left + rw)]
                already = sum(mask[i][j] for i, j in cells)
                if 0 < rh * rw - already <= room:
                    for i, j in cells:
                        if mask[i][j] == 0:
                            mask[i][j] = 1
                            delta += 1
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    return torch.tensor(mask, dtype=torch.bool)


class ScriptedRandom:
    """Returns scripted values and records every call (name, bounds)."""

    def __init__(self, uniforms, randints):
        self.uniforms, self.randints, self.calls = list(uniforms), list(randints), []

    def uniform(self, a, b):
        self.calls.append(("uniform", a, b))
        return self.uniforms.pop(0)

    def randint(self, a, b):
        self.calls.append(("randint", a, b))
        value = self.randints.pop(0)
        assert a <= value <= b
        return value


@pytest.mark.parametrize(("L", "r", "n"), [(196, 0.4, 78), (49, 0.4, 20), (5, 0.5, 2), (4, 0.4, 2)])
def test_num_masked_is_python_round(L, r, n):
    assert num_block_masked(L, r) == n  # round(2.5) == 2: Python rounds half to even


@pytest.mark.parametrize(("grid", "ratio"), [((14, 14), 0.4), ((7, 7), 0.4), ((6, 9), 0.5)])
def test_same_masks_and_draws_as_the_reference_with_a_seeded_random(grid, ratio):
    num = num_block_masked(grid[0] * grid[1], ratio)
    for seed in range(60):
        ours_rng, ref_rng = random.Random(seed), random.Random(seed)
        ours = block_mask(grid, num, ours_rng)
        ref = reference_block_mask(*grid, num, ref_rng, min_patches=num // 5)
        assert torch.equal(ours, ref), seed
        assert ours_rng.getstate() == ref_rng.getstate()  # same number and order of draws


def test_golden_hand_traced_case():
    # 4x4 grid, target 6, min block 1; aspect = exp(log-aspect draw)
    rng = ScriptedRandom(
        uniforms=[4.0, 0.0, 2.0, math.log(2), 1.0, 0.0],
        randints=[0, 1, 1, 2, 0, 0],
    )
    mask = block_mask((4, 4), 6, rng, min_patches=1)
    # round 1: area 4, aspect 1 -> 2x2 at (0, 1): 4 new
    # round 2: room 2, area 2, aspect 2 -> h = round(2) = 2, w = round(1) = 1 at (1, 2):
    #          (1, 2) already masked, (2, 2) new -> 1 new
    # round 3: room 1, area 1, aspect 1 -> 1x1 at (0, 0): 1 new, total 6 = target
    expected = torch.tensor(
        [[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(mask, expected)
    lo, hi = LOG_ASPECT
    assert rng.calls == [
        ("uniform", 1, 6), ("uniform", lo, hi), ("randint", 0, 2), ("randint", 0, 2),
        ("uniform", 1, 2), ("uniform", lo, hi), ("randint", 0, 2), ("randint", 0, 3),
        ("uniform", 1, 1), ("uniform", lo, hi), ("randint", 0, 3), ("randint", 0, 3),
    ]  # fmt: skip


def test_too_wide_or_too_tall_blocks_draw_no_position():
    # area 16 on a 4x4 grid -> 4x4, not strictly smaller: rejected without randint; the
    # next attempt (area 4, 2x2) is placed
    rng = ScriptedRandom(uniforms=[16.0, 0.0, 4.0, 0.0], randints=[2, 2])
    mask = block_mask((4, 4), 4, rng, min_patches=1)
    assert [c[0] for c in rng.calls] == ["uniform"] * 4 + ["randint"] * 2
    assert mask.sum() == 4 and mask[2:, 2:].all()


def test_a_round_that_adds_nothing_stops_below_the_target():
    # round 1: a 2x2 block at (0, 0). round 2: ten attempts that land on it (no new cell)
    uniforms = [4.0, 0.0] + [4.0, 0.0] * 10
    rng = ScriptedRandom(uniforms=uniforms, randints=[0, 0] * 11)
    mask = block_mask((4, 4), 8, rng, min_patches=1)
    assert mask.sum() == 4 < 8  # early stop: the count may end below the target
    assert len(rng.calls) == 4 * 11 and not rng.uniforms


def test_a_block_never_overshoots_the_remaining_room():
    # round 2 has room 1; a 2x2 block adding 4 is refused, a 1x1 is accepted
    rng = ScriptedRandom(uniforms=[4.0, 0.0, 4.0, 0.0, 1.0, 0.0], randints=[0, 0, 2, 2, 3, 3])
    mask = block_mask((4, 4), 5, rng, min_patches=1)
    assert mask.sum() == 5 and mask[3, 3] and not mask[2, 2]


def test_ratio_never_exceeds_the_target_and_is_close_on_average():
    rng = random.Random(0)
    for grid, num in [((14, 14), 78), ((7, 7), 20)]:
        counts = block_masks(400, grid, num, rng).flatten(1).sum(1).float()
        assert counts.max() <= num
        assert counts.mean() > 0.98 * num  # measured 77.5 / 78 and 19.98 / 20


def test_block_area_draws_start_at_the_minimum_block_size():
    class Recording(random.Random):
        def uniform(self, a, b):
            self.bounds.append((a, b))
            return super().uniform(a, b)

    rng = Recording(0)
    rng.bounds = []
    block_masks(20, (14, 14), 78, rng)
    areas = rng.bounds[::2]  # (area, log-aspect) pairs
    assert {a for a, _ in areas} == {78 // 5}  # SlowFast: min_num_patches = num_mask // 5
    assert max(b for _, b in areas) == 78 and all(b >= 1 for _, b in areas)
    rng.bounds = []
    block_mask((14, 14), 78, rng, min_patches=30)
    assert {a for a, _ in rng.bounds[::2]} == {30}


def test_batched_masks_are_sequential_draws_from_one_rng():
    masks = block_masks(5, (7, 7), 20, random.Random(3))
    rng = random.Random(3)
    assert masks.shape == (5, 7, 7) and masks.dtype == torch.bool
    for m in masks:
        assert torch.equal(m, block_mask((7, 7), 20, rng))
    assert torch.equal(masks, block_masks(5, (7, 7), 20, random.Random(3)))  # reproducible
    assert not torch.equal(masks, block_masks(5, (7, 7), 20, random.Random(4)))


def test_bad_ratio():
    with pytest.raises(ValueError, match="mask_ratio"):
        num_block_masked(49, 1.0)
