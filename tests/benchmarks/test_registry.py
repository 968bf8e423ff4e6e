"""benchmarks/registry.py: one ``morphcat bench NAME`` per declared benchmark, listed by group,
and the TensorFlow it declares is what it needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.registry import BENCHMARKS, GROUPS, arg, benchmark
from flows.cli import build_parser, main


def test_bench_list_shows_every_benchmark_under_its_group(capsys):
    assert main(["bench", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [i for i, line in enumerate(lines) if not line.startswith(" ")]
    assert [lines[i] for i in headers] == [f"{g}:" for g in GROUPS]
    for b in BENCHMARKS.values():
        start = headers[GROUPS.index(b.group)]
        end = headers[GROUPS.index(b.group) + 1] if b.group != GROUPS[-1] else len(lines)
        assert any(line.split()[0] == b.name for line in lines[start + 1:end]), b.name


def test_every_benchmark_is_a_bench_sub_command_and_no_bench_dash_command_is_left():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert not [c for c in commands if c.startswith("bench-")]
    names = next(a for a in commands["bench"]._actions if a.dest == "benchmark").choices
    assert list(names) == list(BENCHMARKS)
    args = parser.parse_args(["bench", "similar", "--out", "x", "--rows", "10,20"])
    assert (args.benchmark, args.rows, args.queries, args.tensorflow) == ("similar", "10,20", 200, False)
    assert parser.parse_args(["bench", "throughput", "--out", "x"]).tensorflow is True


def test_a_benchmark_is_declared_once_in_a_known_group():
    with pytest.raises(ValueError, match="declared twice"):
        benchmark("similar", GROUPS[0], "again", arg("--out"), tensorflow=False)(lambda args: None)
    with pytest.raises(ValueError, match="group must be one of"):
        benchmark("new", "misc", "?", tensorflow=False)


def test_a_benchmark_declared_without_tensorflow_runs_without_it(tmp_path):
    code = ("import sys\n"
            "from flows.cli import main\n"
            f"assert main(['bench', 'similar', '--out', {str(tmp_path)!r}, '--rows', '1500', '--queries', '2']) == 0\n"
            "assert 'tensorflow' not in sys.modules, 'bench similar imported TensorFlow'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "similar.json").is_file() and "| 1,500 |" in proc.stdout
