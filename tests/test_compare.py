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
    assert header.split(" | ")[1:] == ["Market-1501 SSIM", "Market-1501 IS", "Market-1501 mask-SSIM",
                                       "Market-1501 mask-IS", "Market-1501 PCKh", "DeepFashion SSIM",
                                       "DeepFashion IS", "DeepFashion PCKh |"]
    ours = next(line for line in text.splitlines() if line.startswith("| ours |"))
    assert ours == "| ours | 0.312 | not run | 0.811 | not run | not run | 0.770 | 3.400 | – |"
    xinggan = next(line for line in text.splitlines() if line.startswith("| XingGAN (paper, reported) |"))
    assert xinggan == "| XingGAN (paper, reported) | 0.313 | 3.506 | 0.816 | 3.872 | 0.93 | 0.778 | 3.476 | 0.95 |"
    assert "patn-market" in text and "## Preset gfla" in text and "| gfla | deepfashion | – | 9.500 | 0.200 |" in text
    assert "PIDM (paper, reported)" in text
    assert str(market) in text


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
