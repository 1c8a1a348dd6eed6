"""The tile grid and the clipping of boxes to a tile, against hand-computed cases."""

from __future__ import annotations

import pytest

from detplug.core.data.tiles import Tile, clip_to_tile, tile_grid, tile_starts, tiles_needed


def test_a_side_that_fits_is_one_window_at_zero() -> None:
    assert tile_starts(320, 320, 0.2) == [0]
    assert tile_starts(100, 320, 0.2) == [0]


def test_windows_step_by_size_less_overlap_and_the_last_ends_at_the_edge() -> None:
    # 1000 px, 320 px tiles, overlap 0.2: stride 256 -> 0, 256, 512, then 680 (= 1000 - 320), not 768
    assert tile_starts(1000, 320, 0.2) == [0, 256, 512, 680]
    # an exact fit adds no shifted window
    assert tile_starts(576, 320, 0.2) == [0, 256]
    assert tile_starts(640, 320, 0.0) == [0, 320]


def test_grid_is_row_by_row_and_a_short_side_is_not_cut() -> None:
    grid = tile_grid(200, 700, 320, 0.2)  # height fits: one row, 200 px high
    assert grid == [Tile(0, 0, 200, 320), Tile(0, 256, 200, 320), Tile(0, 380, 200, 320)]
    assert tile_grid(100, 90, 320, 0.2) == [Tile(0, 0, 100, 90)]  # a small image stays whole
    big = tile_grid(1000, 600, 320, 0.25)  # stride 240: rows 0 240 480 680, columns 0 240 280
    assert [(tile.top, tile.left) for tile in big[:4]] == [(0, 0), (0, 240), (0, 280), (240, 0)]
    assert len(big) == 12 == tiles_needed(1000, 600, 320, 0.25)
    assert all(tile.bottom <= 1000 and tile.right <= 600 for tile in big)


@pytest.mark.parametrize("size, overlap", [(0, 0.2), (320, 1.0), (320, -0.1)])
def test_grid_refuses_a_size_or_overlap_out_of_range(size: int, overlap: float) -> None:
    with pytest.raises(ValueError, match="tile"):
        tile_grid(500, 500, size, overlap)


def test_boxes_are_clipped_kept_ignored_or_dropped_by_the_area_inside() -> None:
    tile = Tile(top=100, left=200, height=100, width=100)  # x 200..300, y 100..200
    boxes = [
        (210, 110, 230, 140),  # wholly inside: kept as is, moved to the tile's pixels
        (280, 150, 320, 170),  # 20 of 40 px wide inside: ratio 0.5, kept at exactly min_area_ratio
        (290, 150, 330, 170),  # 10 of 40 inside: 0.25, an ignore region
        (0, 0, 50, 50),        # outside: dropped
        (300, 120, 340, 160),  # touches the right edge only: dropped
    ]
    clipped = clip_to_tile(boxes, tile, min_area_ratio=0.5)
    assert [(c.index, c.box, c.kept) for c in clipped] == [
        (0, (10, 10, 30, 40), True),
        (1, (80, 50, 100, 70), True),
        (2, (90, 50, 100, 70), False),
    ]
