"""Several surfaces in one render: each surface's own material where its mask says, nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import InputError, Pipeline, SurfaceMaterial
from pipeline.geometry import LineGeometry
from pipeline.project import feather_alpha
from pipeline.stages import Geometry, Wall
from pipeline.surfaces import PAINT_ORDER, covering_geometry


@pytest.fixture(scope="module")
def house(shared_dir):
    return np.asarray(Image.open(shared_dir / "data/houses/house_100.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def swatch(shared_dir):
    return str(shared_dir / "data/textures/roof_slates_polyhaven_roof_slates_02.png")


def boxes(shape):
    """Four disjoint client masks: roof band on top, wall below it, a trim strip and a door inside the wall area."""
    h, w = shape
    masks = {name: np.zeros(shape, bool) for name in ("roof", "wall", "trim", "door")}
    masks["roof"][h // 8: h // 4, w // 8: 7 * w // 8] = True
    masks["wall"][h // 4 + 20: 3 * h // 4, w // 8: 7 * w // 8] = True
    masks["trim"][3 * h // 4 + 20: 3 * h // 4 + 40, w // 8: 7 * w // 8] = True
    masks["door"][h // 2: 3 * h // 4, w // 2: w // 2 + 60] = True
    masks["wall"] &= ~masks["door"]
    return masks


def png(mask):
    return Image.fromarray(mask.astype(np.uint8) * 255)


def test_each_surface_gets_its_own_material_and_nothing_else_changes(house, swatch):
    masks = boxes(house.shape[:2])
    pipe = Pipeline(None, LineGeometry())
    result = pipe.run(house, "#3366CC", None, mask=png(masks["wall"]), surfaces=[
        SurfaceMaterial("roof", swatch, mask=png(masks["roof"])),
        SurfaceMaterial("trim", "#F4F1EA", mask=png(masks["trim"])),
        SurfaceMaterial("door", "#AA2020", mask=png(masks["door"]))])
    assert list(result.painted) == ["roof", "wall", "trim", "door"]  # back to front
    assert all(result.painted[n]["mask"] == "client" for n in result.painted)
    out = result.image.astype(int)
    reach = np.zeros(house.shape[:2], bool)
    for name, m in masks.items():
        reach |= feather_alpha(m) > 0
        inner = out[m & (feather_alpha(m) == 1)].mean(0)
        before = house[m].astype(int).mean(0)
        assert np.abs(inner - before).sum() > 30, name  # each region changed
        if name == "wall":
            assert inner[2] > inner[0] + 40  # blue paint
        if name == "door":
            assert inner[0] > inner[2] + 40  # red paint
        if name == "trim":
            assert inner.min() > before.min()  # off-white, lighter
    # outside every surface's feathered edge the photo is bit-identical
    assert np.array_equal(result.image[~reach], house[~reach])
    # the door sits inside the wall's bounding box and is painted after it: its own colour, not the wall's
    d = masks["door"] & (feather_alpha(masks["door"]) == 1)
    assert np.array_equal(result.image[d], pipe.run(house, "#AA2020", None, mask=png(masks["door"])).image[d])


def test_paint_on_a_surface_keeps_its_shading(house):
    h, w = house.shape[:2]
    wall = np.zeros((h, w), bool)
    wall[h // 3: h // 2, w // 3: w // 2] = True
    trim = np.zeros((h, w), bool)
    trim[h // 2 + 10: h // 2 + 200, w // 8: 7 * w // 8] = True
    result = Pipeline(None, LineGeometry()).run(house, "#808080", None, mask=png(wall),
                                                surfaces=[SurfaceMaterial("trim", "#808080", mask=png(trim))])
    core = trim & (feather_alpha(trim) == 1)
    lum_in = house[core].astype(float).mean(1)
    lum_out = result.image[core].astype(float).mean(1)
    assert np.corrcoef(lum_in, lum_out)[0, 1] > 0.6  # light and dark parts stay light and dark
    assert lum_out.std() > 5


def test_a_surface_the_photo_lacks_is_a_warning(model_dir):
    # a bare wall of one colour under a sky: the house parser finds no garage door in it
    photo = np.zeros((480, 640, 3), np.uint8)
    photo[:160] = (120, 170, 235)
    photo[160:] = (200, 190, 170)
    wall = np.zeros(photo.shape[:2], bool)
    wall[200:440, 40:600] = True
    result = Pipeline.embedded(model_dir).run(photo, "#808080", None, mask=png(wall),
                                              surfaces=[SurfaceMaterial("garage_door", "#202020")])
    assert "segment" in result.timings and "client-mask" in result.backends["segment"]
    assert any("surface garage_door: not painted, the house parser found none" in w for w in result.warnings)
    assert list(result.painted) == ["wall"] and np.array_equal(result.mask, wall)


@pytest.mark.parametrize("surfaces, message", [
    ([SurfaceMaterial("shutters", "#FFFFFF")], "shutters are part of the trim surface"),
    ([SurfaceMaterial("window", "#FFFFFF")], "windows are glass"),
    ([SurfaceMaterial("wall", "#FFFFFF")], "main texture"),
    ([SurfaceMaterial("trim", "#FFFFFF"), SurfaceMaterial("trim", "#000000")], "given twice"),
    ([SurfaceMaterial("roof", "#12")], "surface roof: "),
    ([SurfaceMaterial("door", "#123456", mask=png(np.zeros((8, 8), bool)))], "surface door: mask"),
])
def test_bad_surfaces_are_refused_before_any_stage(house, surfaces, message):
    with pytest.raises(InputError, match=message):
        Pipeline(None, LineGeometry()).run(house, "#808080", None, mask=png(np.ones(house.shape[:2], bool)),
                                           surfaces=surfaces, progress=lambda s, f: pytest.fail("no stage"))


def test_covering_geometry_gives_each_pixel_the_nearest_wall():
    left = np.zeros((40, 100), bool)
    left[10:30, 5:40] = True
    right = np.zeros((40, 100), bool)
    right[10:30, 60:95] = True
    geo = Geometry([Wall(left, np.eye(3), 35), Wall(right, 2 * np.eye(3), 35)], "test")
    cover = covering_geometry(geo, left.shape)
    a, b = (np.asarray(w.mask) for w in cover.walls)
    assert not (a & b).any() and (a | b).all()
    assert a[0, 0] and b[39, 99] and a[20, 45] and b[20, 55]
    assert a[left].all() and b[right].all()


def test_paint_order_is_back_to_front():
    assert PAINT_ORDER == ("roof", "wall", "trim", "garage_door", "door")


def test_parser_surfaces_are_painted_from_one_segmentation(model_dir, house, swatch):
    pipe = Pipeline.embedded(model_dir)
    plain = pipe.run(house, "#7A8B99")
    result = pipe.run(house, "#7A8B99", None, surfaces=[SurfaceMaterial("roof", swatch),
                                                        SurfaceMaterial("trim", "#F4F1EA")])
    assert set(result.timings) == {"segment", "geometry", "project"}
    for name in ("roof", "trim"):
        assert result.painted[name]["mask"] == "parser" and result.painted[name]["pixels"] > 0
        np.testing.assert_array_equal(result.surfaces[name], plain.surfaces[name])
    reach = np.zeros(house.shape[:2], bool)
    for name in ("wall", "roof", "trim"):
        reach |= feather_alpha(result.surfaces[name]) > 0
    assert np.array_equal(result.image[~reach], house[~reach])
    roof = result.surfaces["roof"] & (feather_alpha(result.surfaces["roof"]) == 1)
    assert not np.array_equal(result.image[roof], plain.image[roof])
