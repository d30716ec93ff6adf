"""scripts/compare.py: many metrics.json files in one table in the layout of XingGAN's Table 1."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_compare():
    spec = importlib.util.spec_from_file_location("compare_script", REPO / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path: Path, protocol: str, dataset: str, **values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {"protocol": protocol, "num_pairs": 12, "layout": "stems", **values,
               "skipped": values.pop("skipped", {}), "details": {"dataset": dataset}}
    results.update(values)
    path.write_text(json.dumps(results))
    return path


def test_table_in_paper_layout(tmp_path, capsys):
    compare = load_compare()
    market = write_run(tmp_path / "market" / "metrics.json", "patn-market", "market", ssim=0.31234, mask_ssim=0.8111,
                       skipped={"is": "no weights", "mask_is": "no weights", "pckh": "no keypoints"})
    fashion = write_run(tmp_path / "fashion.json", "patn-deepfashion", "deepfashion", ssim=0.77, **{"is": 3.4})
    later = write_run(tmp_path / "gfla" / "metrics.json", "gfla", "deepfashion", fid=9.5, lpips=0.2)
    out = tmp_path / "table.md"
    assert compare.main([f"ours={tmp_path / 'market'}", f"ours={fashion}", str(later), "--out", str(out)]) == 0
    text = out.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method | Market-1501 SSIM"))
    assert header.split(" | ")[1:] == ["Market-1501 SSIM ↑", "Market-1501 IS ↑", "Market-1501 mask-SSIM ↑",
                                       "Market-1501 mask-IS ↑", "Market-1501 PCKh ↑", "DeepFashion SSIM ↑",
                                       "DeepFashion IS ↑", "DeepFashion PCKh ↑ |"]
    ours = next(line for line in text.splitlines() if line.startswith("| ours |"))
    assert ours == "| ours | 0.312 | not run | 0.811 | not run | not run | 0.770 | 3.400 | – |"
    # the best of each column in bold: here every column's best is a reported number
    xinggan = next(line for line in text.splitlines() if line.startswith("| XingGAN (paper, reported) |"))
    assert xinggan == ("| XingGAN (paper, reported) | **0.313** | **3.506** | **0.816** | **3.872** | **0.93** "
                       "| **0.778** | **3.476** | **0.95** |")
    assert "patn-market" in text and "## Preset gfla" in text
    assert "| gfla | deepfashion | – | 9.500 | 0.200 |" in text  # FID and LPIPS: lower is better
    assert "| CFLD (paper, reported) | deepfashion | **0.738** | 6.8 | **0.152** |" in text
    assert "| PIDM (paper, reported) | deepfashion | 0.731 | **6.37** | 0.168 |" in text
    assert "PIDM (paper, reported)" in text
    assert str(market) in text


def test_best_values_follow_each_metrics_direction(tmp_path):
    """Our run beats the papers on SSIM (higher) and on FID (lower) but not on LPIPS: bold exactly there."""
    compare = load_compare()
    run = write_run(tmp_path / "r" / "metrics.json", "gfla", "deepfashion", ssim=0.9, fid=5.0, lpips=0.3)
    text = compare.compare([f"mine={run.parent}"])
    assert "| mine | deepfashion | **0.900** | **5.000** | 0.300 |" in text
    assert "| CFLD (paper, reported) | deepfashion | 0.738 | 6.8 | **0.152** |" in text


def test_csv_and_latex_outputs(tmp_path, capsys):
    import csv
    import io

    compare = load_compare()
    market = write_run(tmp_path / "m" / "metrics.json", "patn-market", "market", ssim=0.4, mask_ssim=0.7,
                       skipped={"is": "no weights"})
    gfla = write_run(tmp_path / "g" / "metrics.json", "gfla", "deepfashion", fid=9.5, lpips=0.2)
    outs = [tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.tex"]
    assert compare.main([f"ours={market.parent}", f"later={gfla.parent}"] + [x for o in outs for x in ("--out", str(o))]) == 0
    rows = list(csv.DictReader(io.StringIO(outs[1].read_text())))
    ours = next(r for r in rows if r["method"] == "ours")
    assert ours["table"].startswith("XingGAN Table 1") and float(ours["Market-1501 SSIM"]) == 0.4
    assert ours["Market-1501 IS"] == "not run" and ours["DeepFashion SSIM"] == ""
    assert ours["best"] == "Market-1501 SSIM"  # 0.4 beats the papers' 0.311 and 0.313; 0.7 < 0.816
    later = next(r for r in rows if r["method"] == "later")
    assert later["table"] == "Preset gfla" and float(later["FID"]) == 9.5 and later["Market-1501 SSIM"] == ""
    tex = outs[2].read_text()
    assert tex.count("\\begin{tabular}") == 2 and "\\toprule" in tex and "\\bottomrule" in tex
    assert "ours & \\textbf{0.400} & not run & 0.700 &" in tex
    assert "SSIM $\\uparrow$" in tex and "FID $\\downarrow$" in tex
    assert outs[0].read_text().startswith("# Evaluation runs")
    assert compare.main([str(market.parent), "--out", str(tmp_path / "t.txt")]) == 2
    assert ".md, .csv or .tex" in capsys.readouterr().err


def test_bad_argument_is_named(tmp_path, capsys):
    compare = load_compare()
    assert compare.main([str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("{}")
    assert compare.main([str(tmp_path / "x.json")]) == 2
    assert "no 'protocol'" in capsys.readouterr().err


def test_run_folders_with_equals_signs(tmp_path):
    """A run folder whose name holds '=' is taken whole; LABEL=PATH splits on the first '='."""
    compare = load_compare()
    run = write_run(tmp_path / "lr=2e-4" / "metrics.json", "patn-market", "market", ssim=0.3)
    label, path, _ = compare.load_run(str(run.parent))
    assert label == "lr=2e-4" and path == run  # not label "…/lr", path "2e-4"
    label, path, _ = compare.load_run(f"mine={run.parent}")
    assert label == "mine" and path == run
