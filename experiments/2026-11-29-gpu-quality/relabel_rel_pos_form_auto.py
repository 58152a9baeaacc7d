"""One-off conversion (2026-11-29, after session 4's device calls), committed with its effect.

FLASH-Quad's default relative-bias form changed from "auto" (the paper's rule: RoPE-built from 512
positions on) to "toeplitz" after the H200 runs of this folder. The FLASH-Quad runs made without a
rel_pos_form override ran the "auto" form. So that they keep describing what ran (and a new run of the
default is not mistaken for them), each gets the override written out: its configuration, run id,
variant and curve rows are rewritten as those of `flash_quad[rel_pos_form=auto]`, and its message says so.

    python experiments/2026-11-29-gpu-quality/relabel_rel_pos_form_auto.py && python -m suite.report results/nvidia-h200/gpu-quality
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from suite.runs import RunConfig  # noqa: E402

RUNS = ROOT / "results" / "nvidia-h200" / "gpu-quality" / "runs"
NOTE = "relabelled: ran under the old default rel_pos_form='auto' (the paper's rule), see experiments/2026-11-29-gpu-quality/"

for path in sorted(RUNS.glob("*.json")):
    record = json.loads(path.read_text())
    s = record["summary"]
    cfg = json.loads(s["config_json"])
    if s["model"] != "flash_quad" or any(k == "rel_pos_form" for k, _ in cfg["overrides"]):
        continue
    cfg["overrides"] = [list(kv) for kv in cfg["overrides"]] + [["rel_pos_form", "auto"]]
    new = RunConfig(**{**cfg, "overrides": tuple(tuple(kv) for kv in cfg["overrides"])})
    old_id = s["run_id"]
    s.update(run_id=new.run_id, variant=new.variant, config_json=json.dumps(new.as_dict(), sort_keys=True),
             message=NOTE)
    for row in record["curve"]:
        row["run_id"] = new.run_id
    (RUNS / f"{new.run_id}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    path.unlink()
    print(f"{old_id} -> {new.run_id} {new.variant} {s['objective']} {s['context']} lr {s['lr']}")
