"""results.png: the panels chosen from history.csv's columns, the picture written whole,
and the run that draws it at each period's end and on resume."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from detplug.core.pictures.training_curves import Panel, draw_results, image_size, panels

HEADER = ["epoch", "period", "learning_rate", "ciou/8", "ciou/16", "ciou", "objectness", "total", "seconds",
          "images_per_second", "val_ciou/8", "val_ciou/16", "val_ciou", "val_objectness", "val_total",
          "Car/moderate/AP40", "Car/easy/AP40", "Pedestrian/moderate/AP40", "mAP_moderate_AP40"]


def write_history(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(row) for row in [HEADER, *rows]) + "\n")
    return path


def test_each_loss_part_the_learning_rate_and_each_metric_group_get_a_panel():
    assert panels(HEADER) == [
        Panel("loss: ciou", (("ciou", "ciou", "train"), ("val ciou", "val_ciou", "val"), ("/8", "ciou/8", "term"),
                             ("/16", "ciou/16", "term"))),
        Panel("loss: objectness", (("objectness", "objectness", "train"),
                                   ("val objectness", "val_objectness", "val"))),
        Panel("loss: total", (("total", "total", "train"), ("val total", "val_total", "val"))),
        Panel("learning rate", (("learning rate", "learning_rate", "train"),), log_scale=True),
        Panel("metric: Car", (("moderate/AP40", "Car/moderate/AP40", "metric"),
                              ("easy/AP40", "Car/easy/AP40", "metric"))),
        Panel("metric: Pedestrian", (("moderate/AP40", "Pedestrian/moderate/AP40", "metric"),)),
        Panel("metric: summary", (("mAP_moderate_AP40", "mAP_moderate_AP40", "metric"),)),
    ]


def test_a_history_without_validation_or_metrics_has_the_training_parts_only():
    header = ["epoch", "period", "learning_rate", "box", "total", "seconds", "images_per_second"]
    assert [panel.title for panel in panels(header)] == ["loss: box", "loss: total", "learning rate"]


def test_results_png_is_a_whole_png_of_the_size_its_panels_give(tmp_path):
    # Two periods; metrics on the evaluated epochs only (empty cells elsewhere).
    history = write_history(tmp_path / "history.csv", [
        ["1", "1", "0.001", "1.0", "1.1", "2.1", "0.5", "2.6", "10", "5", "0.9", "1.0", "1.9", "0.4", "2.3",
         "", "", "", ""],
        ["2", "1", "0.0005", "0.8", "0.9", "1.7", "0.4", "2.1", "10", "5", "0.8", "0.9", "1.7", "0.4", "2.1",
         "0.2", "0.3", "0.1", "0.15"],
        ["3", "2", "0.0001", "0.7", "0.8", "1.5", "0.3", "1.8", "10", "5", "0.7", "0.8", "1.5", "0.3", "1.8",
         "0.4", "0.5", "0.2", "0.3"],
    ])
    out = draw_results(history, tmp_path / "run" / "results.png", title="plan 'x'")
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == image_size(history) == (1600, 600)
    assert [p.name for p in out.parent.iterdir()] == ["results.png"]  # no temporary file left


def test_training_draws_results_png_at_each_period_end(finished):
    plan, run, _ = finished
    stdout = (run.parent / "stdout.txt").read_text()
    assert stdout.count(f"drew the training curves: {run / 'results.png'}") == 2  # two periods
    with Image.open(run / "results.png") as image:
        assert image.format == "PNG" and image.size == image_size(run / "history.csv")
