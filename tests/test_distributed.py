"""Multi-process sweeps under torchrun, on the CPU (gloo): sharding the runs, and data-parallel (--ddp).

The end-to-end tests start `python -m torch.distributed.run --nproc_per_node 2 --standalone run_all.py`
exactly as a user would, on a few KB of local text, and read back the results folder.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from suite import distributed as D
from suite.cli import main as cli_main
from suite.sweep import UsageError, check_ddp, distributed_share, expand, get_preset

ROOT = Path(__file__).resolve().parents[1]
MODELS = "transformer,flash,performer"

SUBJECTS = ["the river", "a lantern", "the old clock", "my neighbour", "the winter wind", "a grey heron",
            "the ferryman", "seven sparrows", "the quiet library", "an orchard"]
VERBS = ["carries", "remembers", "whispers to", "waits for", "follows", "outlasts", "counts", "borrows"]
OBJECTS = ["the morning light", "forty letters", "a broken promise", "the harbour bells", "its own shadow",
           "the last train", "every lost glove", "a map of the stars", "the baker's daughter"]
PLACES = ["beyond the hill", "under the bridge", "in the attic", "by the canal", "at the crossroads",
          "before dawn", "after the storm", "near the lighthouse"]


def write_corpus(folder: Path, n_files: int = 4, paragraphs: int = 6) -> Path:
    """A few KB of varied English-like text in several *.txt files (deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for f in range(n_files):
        paras = []
        for p in range(paragraphs):
            sentences = []
            for s in range(5 + (p + f) % 4):
                k += 1
                sentence = (f"{SUBJECTS[k % len(SUBJECTS)]} {VERBS[(k * 3) % len(VERBS)]} "
                            f"{OBJECTS[(k * 5) % len(OBJECTS)]} {PLACES[(k * 7) % len(PLACES)]}")
                if k % 4 == 0:
                    sentence += f", and {k * 13 % 97} more besides"
                sentences.append(sentence[0].upper() + sentence[1:] + ("?" if k % 9 == 0 else "."))
            paras.append(" ".join(sentences))
        (folder / f"chapter_{f}.txt").write_text(f"Chapter {f + 1}\n\n" + "\n\n".join(paras) + "\n")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def sweep_args(corpus: Path, out: Path, models: str = MODELS) -> list[str]:
    return ["--preset", "smoke", "--models", models, "--contexts", "32", "--budget", "1",
            "--tokens-per-step", "256", "--corpus", f"text:{corpus}", "--out", str(out)]


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
           "run_all.py", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return proc


def dry_run_ids(args: list[str], capsys) -> list[str]:
    """The run ids `run_all.py --dry-run` lists, in order."""
    capsys.readouterr()
    assert cli_main([*args, "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"{len(lines) - 1} runs")
    return [line.split()[0] for line in lines[:-1]]


def summaries(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text())["summary"] for p in sorted((out / "runs").glob("*.json"))}


# --------------------------------------------------------------------------- unit tests

def test_distributed_share_partitions_runs():
    runs = expand(get_preset("smoke"), models=["transformer", "flash", "performer", "combiner", "flash_quad"],
                  contexts=[32, 64], tokens_per_step=256)
    assert len(runs) == 10
    for world in (1, 2, 3, 4, 16):
        shares = [distributed_share(runs, r, world)[0] for r in range(world)]
        ids = [cfg.run_id for share in shares for cfg in share]
        assert sorted(ids) == sorted(cfg.run_id for cfg in runs)     # every run once, on one rank only
        assert max(map(len, shares)) - min(map(len, shares)) <= 1    # balanced
        for r, share in enumerate(shares):
            assert share == runs[r::world]                           # fixed: run i -> rank i mod world
    mine, rank, world = distributed_share(runs, 1, 2, ddp=True)      # data-parallel: everyone runs everything
    assert (mine, rank, world) == (runs, 1, 2)
    with pytest.raises(ValueError):
        distributed_share(runs, 2, 2)


def test_distributed_share_reads_torchrun_env(monkeypatch):
    runs = expand(get_preset("smoke"), models=["transformer", "flash", "performer"], contexts=[32],
                  tokens_per_step=256)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed_share(runs) == (runs, 0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed_share(runs) == (runs[1::2], 1, 2)


def test_helpers_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (D.rank(), D.world_size(), D.local_rank(), D.is_main()) == (0, 1, 0, True)
    assert D.init_from_env("cpu") is False and not D.is_initialized()
    D.barrier()
    D.destroy()
    assert D.resolve_device("cuda") == "cuda" and D.resolve_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert D.resolve_device("cuda") == "cuda:3"        # one GPU per process under torchrun
    assert D.resolve_device("cuda:1") == "cuda:1"      # an explicit index is kept
    assert D.resolve_device("cpu") == "cpu"


def test_check_ddp_refuses_an_uneven_batch():
    runs = expand(get_preset("smoke"), models=["flash"], contexts=[32], tokens_per_step=96)  # batch 3
    check_ddp(runs, 1)
    check_ddp(runs, 3)
    with pytest.raises(UsageError, match="multiple of 2"):
        check_ddp(runs, 2)


# --------------------------------------------------------------------------- torchrun, 2 processes

@pytest.mark.slow
def test_torchrun_shards_the_sweep(corpus, tmp_path, capsys):
    out = tmp_path / "sharded"
    args = sweep_args(corpus, out)
    expected = dry_run_ids(args, capsys)
    assert len(expected) == 3
    proc = torchrun(args)
    assert proc.stdout.count("runs done") == 1                       # rank 0 alone writes the report
    table = pd.read_csv(out / "runs.csv")
    assert sorted(table["run_id"]) == sorted(expected)               # each expected run exactly once
    assert (table["status"] == "ok").all(), table[["model", "status", "message"]]
    done = summaries(out)
    assert sorted(done) == sorted(expected)
    for i, run_id in enumerate(expected):                            # executed by one rank: i mod 2
        assert done[run_id]["rank"] == i % 2
        assert done[run_id]["world_size"] == 1
    for i, run_id in enumerate(expected):                            # ... and logged once, by that rank
        label = f"train:{done[run_id]['model']}:clm:T=32:seed=0: ok"
        lines = [line for line in proc.stderr.splitlines() if label in line]
        assert len(lines) == 1 and lines[0].endswith(f"(rank {i % 2}/2)"), proc.stderr[-3000:]
    assert (out / "curves.csv").exists() and (out / "tables").is_dir()


@pytest.mark.slow
def test_torchrun_data_parallel(corpus, tmp_path, capsys):
    out = tmp_path / "ddp"
    args = sweep_args(corpus, out, models="flash")
    expected = dry_run_ids(args, capsys)
    proc = torchrun([*args, "--ddp"])
    assert proc.stdout.count("runs done") == 1
    assert "data-parallel over 2 processes" in proc.stderr
    done = summaries(out)
    assert sorted(done) == expected                                   # one result file, written by rank 0
    s = done[expected[0]]
    assert s["status"] == "ok", s["message"]
    assert s["world_size"] == 2 and s["rank"] == 0
    assert s["tokens_per_step"] == 256 and s["batch_size"] == 8 and s["batch_size_per_rank"] == 4
    assert s["steps"] >= 1 and s["tokens"] == s["steps"] * 256
    for key in ("final_eval_loss", "final_train_loss"):
        assert s[key] is not None and math.isfinite(s[key]), key
    table = pd.read_csv(out / "runs.csv")
    assert list(table["run_id"]) == expected and int(table["world_size"].iloc[0]) == 2


def test_check_device_accepts_cpu_cuda_and_cuda_n_and_refuses_the_rest(monkeypatch):
    for good in ("cpu", "cuda", "cuda:0", "cuda:12"):
        D.check_device(good, present=False)
    for bad in ("mps", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "", "cpu:0"):
        with pytest.raises(ValueError, match="valid devices: cpu, cuda, cuda:N"):
            D.check_device(bad, present=False)
    D.check_device("cpu")
    monkeypatch.setattr(D.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        D.check_device("cuda")
    monkeypatch.setattr(D.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(D.torch.cuda, "device_count", lambda: 2)
    D.check_device("cuda:1")
    with pytest.raises(ValueError, match="2 visible GPU.*valid here: cpu, cuda, cuda:0, cuda:1"):
        D.check_device("cuda:7")
