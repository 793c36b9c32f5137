"""One argument style for every non-Lightning ``ser-mtl`` command (``ser_mtl.command_line``), through ``main``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect

import pytest

from ser_mtl import cli
from ser_mtl.analysis_commands import report_main
from ser_mtl.cli import main
from ser_mtl.command_line import ForwardingCommand, parse_function_args, split_argv
from ser_mtl.commands import classify
from ser_mtl.runs import cv_command


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``main(args)`` for a command that exits."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def registered() -> list[tuple[str, object]]:
    """(name, command) of every registered command whose module exists in this checkout."""
    found = []
    for name, (module, function, _) in cli.COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found.append((name, getattr(importlib.import_module(module), function)))
    return found


@pytest.mark.parametrize(("inputs", "expected"), [
    (["a", "b", "c"], ["a", "b", "c"]),
    (["[a, b]"], ["a", "b"]),
    (["a"], ["a"]),
    (["my_wavs/"], ["my_wavs/"]),
])
def test_a_list_option_takes_several_values_a_json_list_or_one_value(inputs, expected) -> None:
    kwargs = parse_function_args(classify, ["--inputs", *inputs, "--ckpt", "best.ckpt"], "ser-mtl classify")
    assert kwargs["inputs"] == expected and kwargs["ckpt"] == "best.ckpt"


def test_list_items_get_the_item_type_and_positional_folders_stay_positional() -> None:
    def folds(ids: list[int], seconds: tuple[float, float] = (1.0, 2.0), name: str = "x") -> None:
        """Test command.

        Args:
            ids: fold ids.
            seconds: a range.
            name: a name.
        """

    kwargs = parse_function_args(folds, ["--ids", "0", "2", "--seconds", "1.5", "4", "--name", "y"], "t")
    assert kwargs == {"ids": [0, 2], "seconds": (1.5, 4.0), "name": "y"}
    assert parse_function_args(folds, ["--ids=3"], "t")["ids"] == [3]
    # README: `ser-mtl report DIR... --out OUT`; the options may also come first
    assert parse_function_args(report_main, ["runs/a", "runs/b", "--out", "rep"], "r") == \
        {"dirs": ["runs/a", "runs/b"], "out": "rep"}
    assert parse_function_args(report_main, ["--out", "rep", "runs/a"], "r") == {"dirs": ["runs/a"], "out": "rep"}


def test_classify_help_lists_every_parameter_of_the_function(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option, so help texts are not wrapped
    code, out, _ = run_main(["classify", "--help"], capsys)
    assert code == 0
    for name in inspect.signature(classify).parameters:
        assert f"--{name} " in out
    assert "audio files and/or folders" in out and "default: 64" in out


def test_help_of_every_registered_command_lists_its_options(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    import docstring_parser

    commands = registered()
    assert {"synth", "manifest", "folds", "cache", "classify", "cv", "sweep", "baseline", "aggregate",
            "report"} <= {name for name, _ in commands}
    for name, target in commands:
        code, out, _ = run_main([name, "--help"], capsys)
        assert code == 0 and out.startswith(f"usage: ser-mtl {name}"), name
        if isinstance(target, ForwardingCommand):
            options = [o for strings in target.parser().option_strings.values() for o in strings if not o.endswith("+")]
            assert all(o.startswith(("-h", "--help", *target.prefixes)) for o in options)
            assert "go to LightningCLI unchanged" in out or "Every argument goes" in out
        else:
            docs = {p.arg_name: " ".join(p.description.split())
                    for p in docstring_parser.parse(inspect.getdoc(target)).params}
            options = []
            for parameter in inspect.signature(target).parameters:
                # an option, or the positional list of report/aggregate (`dirs [dirs ...]` in the usage)
                assert f"--{parameter} " in out or f"{parameter} [{parameter} ...]" in out, (name, parameter)
                assert docs[parameter] in out, (name, parameter)  # help text from the docstring
        for option in options:
            assert option in out, (name, option)
    code, out, _ = run_main(["cv", "--help"], capsys)
    assert "--cv.out" in out and "--cv.slurm_partition" in out and "default: 1" in out


def test_an_unknown_option_exits_2_with_one_line_naming_it(capsys) -> None:
    code, out, err = run_main(["classify", "--inputs", "a.wav", "--ckpt", "b.ckpt", "--bogus", "1"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("ser-mtl classify: error: unrecognized arguments: --bogus")
    code, _, err = run_main(["cv", "--config", "x.yaml", "--cv.out", "d", "--cv.bogus", "1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--cv.bogus" in err
    code, _, err = run_main(["cv", "--cv.out", "d", "--cv.repeats", "many"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("ser-mtl cv: error: --cv.repeats: ")
    code, _, err = run_main(["classify", "--inputs", "a.wav"], capsys)
    assert code == 2 and "the following arguments are required: --ckpt" in err
    code, _, err = run_main(["report", "--out", "rep"], capsys)
    assert code == 2 and "required: dirs" in err


def test_a_command_error_exits_1_with_one_line(capsys) -> None:
    code, _, err = run_main(["cv", "--config", "x.yaml", "--cv.out", "d", "--cv.folds", "a,b"], capsys)
    assert (code, err) == (1, "ser-mtl cv: --cv.folds 'a,b': expected integers like [0,1,2], 0,1,2 or 0-9\n")


def test_the_forwarding_split() -> None:
    argv = ["--cv.folds", "0,1", "--config", "x.yaml", "--model.alpha", "0.3", "--cv.out", "d"]
    assert split_argv(argv, ("--cv.",)) == (["--cv.folds", "0,1", "--cv.out", "d"],
                                            ["--config", "x.yaml", "--model.alpha", "0.3"])
    assert split_argv(["--cv.out=d", "--data.fold", "2", "-h"], ("--cv.",)) == \
        (["--cv.out=d", "-h"], ["--data.fold", "2"])
    assert split_argv(["--config", "x.yaml"], ()) == ([], ["--config", "x.yaml"])
    # an option whose value is itself a command line, quoted as one shell word
    assert split_argv(["--cv.pretrain", "--config p.yaml --data.root X", "--data.fold", "1"], ("--cv.",)) == \
        (["--cv.pretrain", "--config p.yaml --data.root X"], ["--data.fold", "1"])


def test_cv_parses_its_group_and_forwards_the_rest(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(cv_command, "run_cv", lambda config_args, **kwargs: calls.append((config_args, kwargs)))
    main(["cv", "--cv.folds", "0,1", "--config", "x.yaml", "--model.alpha", "0.3", "--cv.out", "d",
          "--cv.slurm_setup", "module load cuda", "source env/bin/activate", "--trainer.max_epochs", "2"])
    [(config_args, kwargs)] = calls
    assert config_args == ["--config", "x.yaml", "--model.alpha", "0.3", "--trainer.max_epochs", "2"]
    assert (kwargs["folds"], kwargs["out"], kwargs["repeats"]) == ([0, 1], "d", 1)
    assert kwargs["cluster_options"].setup == ["module load cuda", "source env/bin/activate"]


def test_a_forwarding_command_without_arguments_shows_its_help(capsys) -> None:
    code, out, _ = run_main(["baseline"], capsys)
    assert code == 0 and "--baseline.stats" in out and "--baseline.out" in out


def test_a_command_whose_module_is_missing_leaves_the_others_working(capsys, monkeypatch) -> None:
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("ser_mtl.no_such_module", "ghost", "not written yet"))
    code, _, err = run_main(["ghost", "--help"], capsys)
    assert code == 2 and err == "ser-mtl: command 'ghost' is not available (ser_mtl.no_such_module is missing)\n"
    code, out, _ = run_main(["folds", "--help"], capsys)
    assert code == 0 and "--scheme" in out
