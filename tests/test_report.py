"""The report: built from a real tiny run and from hand-made run folders."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from compare.commands.cli import main
from compare.suite.report.build import (
    BENCHMARK_FILE,
    build_report,
    headline,
    pairwise_table,
    run_command,
    summary_table,
)
from compare.suite.report.html import broken_links
from compare.suite.report.run_data import load_run
from compare.suite.runner import RunConfig, run
from compare.suite.summary import summarise


@pytest.fixture(scope="module")
def threshold_run(sigtuple_dir, tmp_path_factory):
    """A real run of the threshold segmenter (no training) on the tiny synthetic data."""
    out = tmp_path_factory.mktemp("run")
    run(RunConfig(segmenters=["threshold"], protocols=["cv", "large", "test"], folds=2, data=str(sigtuple_dir),
                  out=str(out)))
    return out


def _fresh_copy(src, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def test_report_from_a_real_run(threshold_run, tmp_path):
    out = _fresh_copy(threshold_run, tmp_path)
    path = build_report(out)
    assert path == out / "report.html"
    html = path.read_text()
    md = (out / "report.md").read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "</html>" in html
    # Images are linked relative to the page, and every one of them exists.
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 4 and not any(src.startswith("data:") for src in srcs)
    assert broken_links(path) == [] and broken_links(out / "report.md") == []
    # predictions/ stays out of the committed results, so the report never links into it.
    assert "predictions/" not in " ".join(re.findall(r'(?:href|src)="([^"]+)"', html))
    assert len(html.encode()) < 4_000_000
    assert "threshold" in md and "highest mean Dice" in md
    for section in ("## Methods", "## Limitations", "## The same cells side by side", "## Per image: the large images"):
        assert section in md, section
    assert "commit" in md.split("## Contents")[0]  # run date and commit under the title
    assert "python -m compare report" in md and "python -m compare run --segmenters threshold" in md
    assert "no training curves" in md  # threshold records no history
    for name in ("dice_per_image", "dice_vs_speed", "counts", "precision_recall"):
        assert (out / "plots" / f"{name}.png").is_file(), name
    assert list((out / "report_assets" / "grid").glob("large-*-threshold.jpg"))
    assert list((out / "report_assets" / "grid").glob("cv-*-threshold.jpg"))
    assert (out / "report_assets" / "test-threshold.jpg").is_file()
    assert "None: every unit and image" in md


def test_the_dice_per_image_figure_is_the_same_on_every_build(tmp_path):
    from compare.suite.report.plots import dice_per_image

    rows = pd.DataFrame({"segmenter": ["a"] * 30 + ["b"] * 30, "protocol": "cv",
                         "dice": np.linspace(0.8, 0.95, 60)})
    first = dice_per_image(rows, ["a", "b"], tmp_path / "one.png").read_bytes()
    np.random.seed(1)  # the global random state must not reach the figure
    assert dice_per_image(rows, ["a", "b"], tmp_path / "two.png").read_bytes() == first
    assert dice_per_image(rows, ["a", "b"], tmp_path / "three.png", seed=1).read_bytes() != first


def test_report_cli_rebuilds_without_recomputing(threshold_run, tmp_path, capsys):
    out = _fresh_copy(threshold_run, tmp_path)
    per_image = (out / "per_image.csv").read_bytes()
    shutil.rmtree(out / "models")  # nothing may be re-fitted
    assert main(["report", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (out / "per_image.csv").read_bytes() == per_image
    assert (out / "report.md").is_file()


def _fake_run(root, names=("alpha", "beta", "gamma"), offsets=(0.1, 0.0, 0.098), n=30, histories=None,
              errors=None, benchmarks=None):
    """A hand-made run folder: per-image cv and large rows with known Dice gaps."""
    rng = np.random.default_rng(0)
    rows = []
    for name, offset in zip(names, offsets):
        for i in range(n):
            dice = float(np.clip(0.8 + offset + rng.normal(0, 0.01), 0, 1))
            rows.append({"segmenter": name, "protocol": "cv", "fold": str(i % 3), "image": f"train-{i}",
                         "dice": dice, "iou": dice / (2 - dice), "precision": dice, "recall": dice,
                         "true_count": 1, "pred_count": 1, "tp": 1, "fp": 0, "fn": 0, "predict_s": 0.01,
                         "matched_iou_sum": dice / (2 - dice)})
        rows.append({"segmenter": name, "protocol": "large", "fold": "final", "image": "big", "dice": 0.8,
                     "iou": 0.7, "precision": 0.8, "recall": 0.8, "true_count": 3, "pred_count": 3, "tp": 3,
                     "fp": 0, "fn": 0, "predict_s": 0.1, "matched_iou_sum": 2.1})
    per_image = pd.DataFrame(rows)
    units = {f"{name}/cv-{f}": {"fit_s": 1.0 + k, "predict_s": 0.1 * (k + 1), "pixels": 163840}
             for k, name in enumerate(names) for f in range(3)}
    summary = summarise(per_image, units)
    root.mkdir(parents=True, exist_ok=True)
    per_image.to_csv(root / "per_image.csv", index=False)
    summary.to_csv(root / "summary.csv", index=False)
    (root / "config.json").write_text(json.dumps({"segmenters": list(names), "protocols": ["cv", "large"],
                                                  "folds": 3, "seed": 0, "data": "/nowhere", "out": "results"}))
    (root / "env.json").write_text(json.dumps({"run_seconds": 12.5, "cpu_count": 2}))
    (root / "histories.json").write_text(json.dumps(histories or {}))
    pd.DataFrame(errors or [], columns=["segmenter", "protocol", "fold", "image", "error"]).to_csv(
        root / "errors.csv", index=False)
    if benchmarks is not None:
        (root / BENCHMARK_FILE).parent.mkdir(parents=True, exist_ok=True)
        (root / BENCHMARK_FILE).write_text(json.dumps(benchmarks))
    return root


def test_headline_names_winner_and_significance(tmp_path):
    # alpha and gamma differ by 0.002 (tied at n=30 and sd 0.01); both beat beta by 0.1.
    data = load_run(_fake_run(tmp_path / "r"))
    pairs = pairwise_table(data, "cv", ["alpha", "gamma", "beta"])
    assert len(pairs) == 3
    text = " ".join(headline(data, pairs, "cv"))
    cv = data.summary[data.summary.protocol == "cv"].sort_values("dice_mean", ascending=False)
    best, runner = cv.segmenter.iloc[0], cv.segmenter.iloc[1]
    assert {best, runner} == {"alpha", "gamma"}
    assert text.startswith(f"**{best}** has the highest mean Dice")
    assert f"Next is **{runner}**" in text and "not statistically significant" in text and "tied" in text
    # The effect size stands beside the p-value.
    assert "rank-biserial r" in text and "mean paired difference" in text


def test_headline_significant_when_runner_up_is_clearly_worse(tmp_path):
    data = load_run(_fake_run(tmp_path / "r", names=("alpha", "beta"), offsets=(0.1, 0.0)))
    pairs = pairwise_table(data, "cv", ["alpha", "beta"])
    text = " ".join(headline(data, pairs, "cv"))
    assert "Next is **beta**" in text and "statistically significant" in text
    # A 0.1 Dice gap is larger than the annotation noise; the sentence says so.
    assert "larger than the annotation noise" in text
    # All three count the large image exactly: a tie, said as a tie.
    assert "all 2 segmenters tie" in text and "best counter" not in text


def test_report_shows_pairs_curves_errors_and_benchmarks(tmp_path):
    curve = [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e, "val_dice": 0.5 + e / 20, "lr": 1e-3} for e in range(1, 6)]
    histories = {f"alpha/cv-{f}": curve for f in range(3)}
    errors = [{"segmenter": "beta", "protocol": "large", "fold": "final", "image": "big", "error": "it broke"}]
    bench = {"datetime": "2026-01-01T00:00:00", "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}},
             "benchmarks": [{"group": "fit", "name": "test_fit[alpha]", "params": {"name": "alpha"},
                             "extra_info": {"stage": "fit", "segmenter": "alpha", "case": "fit 8 patches"},
                             "stats": {"mean": 1.25, "stddev": 0.1, "ops": 0.8, "rounds": 2}}]}
    root = _fake_run(tmp_path / "r", histories=histories, errors=errors, benchmarks=bench)
    build_report(root)
    md = (root / "report.md").read_text()
    html = (root / "report.html").read_text()
    assert "Paired tests (Wilcoxon signed-rank, Holm-corrected)" in md
    assert "alpha vs beta" in md and "p (Holm)" in md and "**alpha** better" in md
    assert (root / "plots" / "training_curves.png").is_file()
    assert "it broke" in md and "1 problem(s)" in md
    assert "Test CPU" in md and "1.2500" in md and "fit 8 patches" in md
    assert "--benchmark-json" in md
    # The data folder does not exist: the grid says so instead of failing.
    assert "could not be read" in md or "unreadable" in md
    assert "<table>" in html and "alpha vs beta" in html


def test_report_with_no_scored_protocol(tmp_path):
    root = _fake_run(tmp_path / "r", names=("alpha",), offsets=(0.0,))
    per_image = pd.read_csv(root / "per_image.csv")
    per_image["protocol"] = "test"
    per_image[["dice", "true_count"]] = np.nan
    per_image.to_csv(root / "per_image.csv", index=False)
    summarise(per_image, {}).to_csv(root / "summary.csv", index=False)
    build_report(root)
    md = (root / "report.md").read_text()
    assert "no scored results" in md and "Paired tests need at least two" in md


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        build_report(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="--resume"):
        build_report(tmp_path / "half")


def test_run_command_reproduces_config():
    from compare.pipeline.segmenters import default_names
    from compare.suite.runner import RunConfig

    default = RunConfig(segmenters=[]).protocols
    assert run_command({"segmenters": default_names(), "protocols": default, "folds": 5,
                        "seed": 0, "data": None, "out": "results"}, None) == "python -m compare run --all --out results"
    command = run_command({"segmenters": ["threshold"], "protocols": ["cv", "large"], "folds": 2, "seed": 3,
                           "data": "my data", "out": "/tmp/x"}, None)
    assert command == ("python -m compare run --segmenters threshold --protocols cv,large --folds 2 --seed 3 "
                       "--data 'my data' --out /tmp/x")


def test_constant_columns_are_dropped_with_a_note(tmp_path):
    data = load_run(_fake_run(tmp_path / "r"))
    table, note = summary_table(data.summary, "cv", ["alpha", "gamma", "beta"])
    # One WBC per patch, always found: object F1 and counts say nothing, and PQ equals IoU.
    for column in ("object F1", "count MAE", "exact count", "PQ"):
        assert column not in table.frame.columns and column in note
    assert "Dice [95% CI]" in table.frame.columns and "IoU" in table.frame.columns


def _add_shift_rows(root):
    """Synthetic shift rows (two shifts, both sources) appended to a fake run, summary rebuilt."""
    per_image = pd.read_csv(root / "per_image.csv", dtype={"fold": str, "image": str})
    rows = []
    for name, base in (("alpha", 0.9), ("beta", 0.8), ("gamma", 0.89)):
        for shift, drop in (("scale_2x", 0.3), ("look_rapid", 0.05)):
            for source, true, pred in (("cv", 1, 1), ("large", 3, 3 if drop < 0.1 else 2)):
                rows.append({"segmenter": name, "protocol": "shift", "fold": "final", "image": f"{source}-x",
                             "shift": shift, "source": source, "dice": base - drop, "iou": 0.5, "precision": 0.5,
                             "recall": 0.5, "true_count": true, "pred_count": pred, "tp": 1, "fp": 0, "fn": 0,
                             "predict_s": 0.1, "matched_iou_sum": 0.5, "hd95": 3.0, "surface_dice": 0.8})
    per_image = pd.concat([per_image, pd.DataFrame(rows)], ignore_index=True)
    per_image.to_csv(root / "per_image.csv", index=False)
    summarise(per_image, {}).to_csv(root / "summary.csv", index=False)
    return root


def test_domain_shift_section_and_plot(tmp_path):
    root = _add_shift_rows(_fake_run(tmp_path / "r"))
    build_report(root)
    md = (root / "report.md").read_text()
    assert "## Domain shift" in md
    assert (root / "plots" / "shift_dice.png").is_file()
    section = md.split("## Domain shift")[1].split("\n## ")[0]
    assert "scale_2x" in section and "look_rapid" in section
    # The worst shift is named per segmenter: scale_2x drops Dice by 0.3.
    assert "alpha: scale_2x (Dice 0.600)" in section
    assert "Synthetic shifts are not real labs" in md and "One microscope" not in md


def test_no_shift_section_without_shift_rows(tmp_path):
    root = _fake_run(tmp_path / "r")
    build_report(root)
    md = (root / "report.md").read_text()
    assert "## Domain shift" not in md and "One microscope" in md
    assert broken_links(root / "report.html") == []


def test_broken_links_finds_missing_files_and_bad_data_uris(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    page = tmp_path / "p.html"
    page.write_text('<img src="a.png"><img src="gone.jpg"><img src="data:image/png;base64,!!">'
                    '<img src="data:image/png;base64,eA=="><a href="#top">x</a><a href="missing.png">y</a>')
    assert broken_links(page) == ["gone.jpg", "data:image/png;base64,!!", "missing.png"]


def test_broken_links_reads_markdown_links_and_anchors(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "other.md").write_text("# Other page\n\n## The part\n")
    page = tmp_path / "p.md"
    page.write_text('# Title\n\n<a id="here"></a>\n\n[![a](a.png)](gone.png) [x](#title) [y](#here) [z](#nowhere)\n'
                    "[o](other.md#the-part) [p](other.md#missing) [w](https://example.org)\n\n"
                    "`[not](a/link.md)`\n\n```\n[nor](this.md)\n```\n")
    assert broken_links(page) == ["gone.png", "#nowhere", "other.md#missing"]


@pytest.mark.parametrize("page", ["report.md", "report.html"])
def test_committed_report_links_only_committed_files(page):
    """The report a reader opens from the README: every link resolves in a fresh checkout."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    assert broken_links(results / page) == []
    assert "](predictions/" not in (results / page).read_text() and 'href="predictions/' not in (results / page).read_text()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    """Chromium loads every image of a built report and takes a screenshot (skipped without Chromium)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "check_report_render", Path(__file__).resolve().parents[1] / "scripts" / "check_report_render.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    browser = check.find_browser()
    if browser is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium)")
    root = _add_shift_rows(_fake_run(tmp_path / "r"))
    page = build_report(root)
    images, broken = check.browser_check(page, browser)
    assert images >= 4 and broken == []
    shot = check.screenshot(page, tmp_path / "shot.png", browser, height=800)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1300, 800)
        # A rendered page is not blank: the headline box and text give many colours.
        assert len(img.convert("RGB").getcolors(1 << 20) or []) > 50


def test_warned_shares_per_shift_against_unshifted():
    import pandas as pd

    from compare.suite.report.sections import _warned_shares

    per_image = pd.DataFrame({
        "segmenter": ["rf"] * 6,
        "protocol": ["cv", "large", "shift", "shift", "shift", "shift"],
        "shift": [None, None, "look_rapid", "look_rapid", "blur", "blur"],
        "warning": ["", "no reliable scale", "stain colours unlike", "", "", None],
    })
    frame = _warned_shares(per_image, ["rf", "unet"])
    assert list(frame["images"]) == ["unshifted (cv, large, test)", "blur", "look_rapid"]
    assert list(frame["rf warned"]) == ["0.50", "0.00", "0.50"]
    assert "unet warned" not in frame


def test_methods_read_the_saved_model_folder(threshold_run):
    """Methods describe the colour, scale and instance steps from each model's model.json."""
    from compare.suite.report.methods import methods_blocks

    manifest = json.loads((threshold_run / "models" / "threshold" / "model.json").read_text())
    blocks = dict(methods_blocks(threshold_run, {}, ["threshold"]))
    assert f"drop objects under {manifest['instance_params']['min_area']} px" in blocks["instance stage"]
    assert "model.json" in blocks["instance stage"] and "not saved" not in blocks["instance stage"]
    colour = blocks["colour and scale"]
    assert "white-balanced" in colour and manifest["stain_anchor"] == "none" and "mapped" not in colour
    assert f"WBC {manifest['training_scale']['wbc_diameter']:.0f} px" in colour
    # The threshold's own settings come from its segmenter folder.
    assert "sigma ?" not in blocks["threshold"]


def test_methods_say_which_segmenters_the_outline_stage_grows():
    from compare.suite.report.methods import _outline_text

    text = _outline_text(["unet", "rf", "threshold"])
    assert "For unet each WBC grows through the pixels of probability 0.2" in text
    assert "For unet, rf, threshold it also grows" in text and "at least 0.15 of the WBC's area" in text
    assert "as it is" not in text
    assert _outline_text(["not-registered"]) == ""


@pytest.mark.parametrize("tta, shrunk_views, said", [(False, True, True), (False, False, False), ("d4", True, False)])
def test_unet_methods_say_when_a_shrunk_image_is_read_in_eight_views(tta, shrunk_views, said):
    from compare.suite.report.methods import _unet_text

    text = _unet_text({"model": {"depth": 3}, "predict": {"tta": tta}}, {"params": 10}, shrunk_views=shrunk_views)
    assert ("shrank to 0.5 or less" in text) == said
