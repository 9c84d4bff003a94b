"""The `render-appliance render` command: one photo rendered locally, with more surfaces than the wall."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from appliance.cli import main


def config(tmp_path, model_dir):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\nmodel_dir = "{model_dir}"\n[render]\nforce_cpu = true\n')
    return cfg


def test_render_paints_each_surface_with_its_own_colour(tmp_path, model_dir, shared_dir, capsys):
    photo = shared_dir / "data/houses/house_165.jpg"
    out, walls = tmp_path / "out.png", tmp_path / "wall.png"
    assert main(["--config", str(config(tmp_path, model_dir)), "render", str(photo), "#2E5E4E", "-o", str(out),
                 "--mask-out", str(walls), "--surface", "trim=#F4F1EA", "--surface", "door=#8B1A1A", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    before = np.asarray(Image.open(photo).convert("RGB"), np.int16)
    after = np.asarray(Image.open(out).convert("RGB"), np.int16)
    wall = np.asarray(Image.open(walls)) > 127
    changed = np.abs(after - before).max(-1) > 0
    assert report["painted_fraction"] == pytest.approx(wall.mean(), abs=1e-6)
    # more than the wall changed clearly (the trim and the door; the wall alone changes only a feathered fringe
    # outside its mask, 0.003 % of the photo by more than 40 levels), and not to the wall's green
    clearly = changed & ~wall & (np.abs(after - before).max(-1) > 40)
    assert clearly.mean() > 0.002
    gained = after[clearly]
    greenish = (gained[:, 1] > gained[:, 0] + 20) & (gained[:, 1] > gained[:, 2])
    assert len(gained) and greenish.mean() < 0.05


@pytest.mark.parametrize("spec, reason", [("shutters=#000000", "part of the trim surface"),
                                          ("wall=#000000", "main swatch"), ("trim", "NAME=MATERIAL"),
                                          ("chimney=#000000", "unknown surface")])
def test_render_refuses_a_bad_surface_before_loading_models(tmp_path, spec, reason):
    with pytest.raises(SystemExit, match=reason):
        main(["--config", str(config(tmp_path, tmp_path / "no-models")), "render", "photo.jpg", "#777777",
              "-o", str(tmp_path / "o.png"), "--surface", spec])
