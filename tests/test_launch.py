"""The single-process note (jprefs.launch): when `accelerate launch --num_processes N` starts one
process, jprefs says so; real multi-process launches and plain runs get no note. Pure logic, no
launch (the launches themselves: tests/classifiers/test_multiprocess.py)."""

from __future__ import annotations

import pytest

from jprefs.launch import asked_processes, single_process_note

pytest.importorskip("accelerate")

# what accelerate's simple launcher gives its one child for `accelerate launch --num_processes 2 x.py`
SIMPLE = {"ACCELERATE_USE_CPU": "False", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
          "ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO", "OMP_NUM_THREADS": "1"}
PARENT = ["/venv/bin/python3", "/venv/bin/accelerate", "launch", "--num_processes", "2", "-m", "jprefs.cli",
          "train-rm", "tiny.yaml", "-o", "out"]


@pytest.mark.parametrize("argv, n", [
    (PARENT, 2),
    (["python", "-m", "accelerate.commands.launch", "--num-processes=3", "x.py"], 3),
    (["/venv/bin/accelerate", "launch", "--cpu", "-m", "jprefs.cli"], None),          # not given
    (["python", "-m", "jprefs.cli", "train-rm", "--num_processes", "2"], None),       # not accelerate
    (["/venv/bin/accelerate", "launch", "x.py", "--num_processes", "4"], None),       # the script's own arg
])
def test_asked_processes_reads_the_launch_command_line(argv, n):
    assert asked_processes(argv) == n


def test_the_note_names_the_count_the_cause_and_the_commands_that_work():
    note = single_process_note("train-rm", SIMPLE, PARENT, gpus=0)
    assert note.startswith("jprefs train-rm: 1 process is running, although `accelerate launch` was asked for 2: "
                           "without --multi_gpu, accelerate starts a single process on a machine with no GPU "
                           "(and gives it OMP_NUM_THREADS=1).")
    assert "torchrun --nproc_per_node 2 -m jprefs.cli train-rm" in note
    assert "accelerate launch --multi_gpu --num_processes 2 -m jprefs.cli train-rm" in note
    assert "1 GPU" in single_process_note("rl", SIMPLE, [a.replace("train-rm", "rl") for a in PARENT], gpus=1)


def test_no_note_for_real_launches_plain_runs_and_one_asked_process():
    assert single_process_note("rl", {**SIMPLE, "WORLD_SIZE": "2", "RANK": "0"}, PARENT, gpus=0) is None
    assert single_process_note("rl", {"MASTER_ADDR": "127.0.0.1"}, ["bash"], gpus=0) is None      # no accelerate
    one = [a if a != "2" else "1" for a in PARENT]
    assert single_process_note("rl", SIMPLE, one, gpus=0) is None


def test_without_the_parent_command_line_master_addr_tells():
    # accelerate sets MASTER_ADDR for its single child only when asked for more than one process
    note = single_process_note("rl", SIMPLE, [], gpus=0)
    assert "was asked for more than 1" in note and "--nproc_per_node N" in note
    no_addr = {k: v for k, v in SIMPLE.items() if not k.startswith("MASTER")}
    assert single_process_note("rl", no_addr, [], gpus=0) is None


def test_rl_says_it_too(monkeypatch, capsys):
    pytest.importorskip("torch")
    import jprefs.launch
    from jprefs.rl.dist import get_dist

    for k, v in SIMPLE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(jprefs.launch, "_parent_argv", lambda: [a.replace("train-rm", "rl") for a in PARENT])
    assert not get_dist().enabled
    assert "jprefs rl: 1 process is running, although `accelerate launch` was asked for 2" in capsys.readouterr().err
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.setattr(jprefs.launch, "_parent_argv", lambda: ["bash"])       # plain run under a shell
    for k in SIMPLE:
        monkeypatch.delenv(k, raising=False)
    get_dist()
    assert capsys.readouterr().err == ""
