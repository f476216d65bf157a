"""``harp-prune`` explains itself: help on every flag, registered names as choices, --version."""
from __future__ import annotations

import argparse
import re

import pytest

import harp_plugin
from harp_plugin.cli import commands
from harp_plugin.cli.main import build_parser, main
from harp_plugin.data import load_dataset
from harp_plugin.registry import KINDS, get_registry, hookimpl


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_flag_of_every_subcommand_has_a_description() -> None:
    parser = build_parser()
    for name, sub in subcommands(parser).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and "undocumented" not in action.help, f"`harp-prune {name} {action.dest}` has no help"
            assert "\n" not in action.help, f"`harp-prune {name} {action.dest}`: help must be one line"


@pytest.mark.parametrize(
    ("flag", "kind"),
    [("--dataset", "datasets"), ("--model", "models"), ("--method", "importances"), ("--train-loss", "losses"),
     ("--eval-attacks", "attacks"), ("--certify", "certifiers")],
)
def test_registry_flags_list_every_registered_name(flag: str, kind: str) -> None:
    run = subcommands(build_parser())["run"]
    action = next(a for a in run._actions if flag in a.option_strings)
    listed = re.search(r"one of: ([^;]*)(;|$)", action.help)  # --model: no single default (per training kind)
    assert listed is not None, f"{flag} lists no choices: {action.help}"
    names = get_registry().names(kind)
    assert names and [n.strip() for n in listed[1].split(",")] == names


class ToyDatasetPlugin:
    """A third-party plugin registered at run time, as an installed package's would be."""

    @hookimpl
    def harp_datasets(self) -> dict:
        def toy(**_: object) -> None:
            """A toy set only this test registers."""
        return {"toy-set": toy}


def test_third_party_names_become_choices_and_get_described(capsys) -> None:
    registry = get_registry()
    plugin = ToyDatasetPlugin()
    registry.register(plugin, name="toy_plugin")
    try:
        run = subcommands(build_parser())["run"]
        assert "toy-set" in next(a for a in run._actions if "--dataset" in a.option_strings).help
        assert run.parse_args(["--dataset", "toy-set"]).dataset == "toy-set"
        assert main(["list", "datasets"]) == 0
        listed = capsys.readouterr().out
        assert re.search(r"toy-set\s+A toy set only this test registers\.\s+\[plugin toy_plugin\]", listed)
    finally:
        registry.unregister(plugin)
    assert "toy-set" not in registry.names("datasets")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--batch-size", "0"], "argument --batch-size: batch_size must be >= 1, got 0"),
        (["run", "--eps", "1.5"], "argument --eps: eps must be in [0, 1], got 1.5"),
        (["run", "--eps", "nan"], "argument --eps: eps must be in [0, 1], got nan"),
        (["run", "--pruning-ratio", "1"], "pruning_ratio must be in [0, 1), got 1.0"),
        (["run", "--prune-lr", "0"], "prune_lr must be > 0, got 0.0"),
        (["run", "--pretrain-epochs", "-1"], "pretrain_epochs must be >= 0, got -1"),
        (["run", "--max-train", "2.5"], "setting 'max_train': cannot use '2.5' as int"),
        (["run", "--method", "Psychic"], "unknown importance 'Psychic'; available: adv-taylor, "),
        (["run", "--mode", "sideways"], "mode must be 'channel' or 'unstructured', got 'sideways'"),
        (["run", "--certify", "ibp,laser"], "unknown certifier 'laser'; available: alpha-crown, crown"),
        (["certify", "--method", "guess"], "argument --method: unknown certifier 'guess'"),
        (["certify", "--backend", "gpu"], "argument --backend: invalid choice: 'gpu'"),
        (["certify", "--eps", "-0.1"], "argument --eps: eps must be in [0, 1], got -0.1"),
        (["list", "gadgets"], "argument kind: invalid choice: 'gadgets'"),
        (["run", "--epsilon", "0.1"], "unrecognized arguments: --epsilon 0.1; did you mean --eps? (see `harp-prune run --help`)"),
        (["run", "--pretrain-epoch", "1"], "unrecognized arguments: --pretrain-epoch 1; did you mean --pretrain-epochs?"),
        (["certify", "--wich", "dense"], "unrecognized arguments: --wich dense; did you mean --which?"),
    ],
)
def test_bad_flags_are_refused_at_parse_time_in_one_line(argv, message, monkeypatch, capsys) -> None:
    def must_not_run(arguments):
        raise AssertionError("the command ran despite a bad flag")

    for name in ("run_command", "certify_command", "list_command"):
        monkeypatch.setattr(commands, name, must_not_run)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("harp-prune: error: ") and message in error
    assert error.count("\n") == 1, error


def test_valid_names_are_accepted_case_insensitively() -> None:
    run = subcommands(build_parser())["run"]
    arguments = run.parse_args(["--method", "HARP", "--dataset", "MNIST5K", "--eval-attacks", "pgd,FGSM"])
    assert (arguments.method, arguments.eval_attacks) == ("HARP", ("pgd", "FGSM"))


def test_version_comes_from_the_package(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"harp-prune {harp_plugin.__version__}"


def test_list_describes_every_registered_component(capsys) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    registry = get_registry()
    for kind in KINDS:
        assert f"{kind}:" in printed
        for name in registry.names(kind):
            line = next(l for l in printed.splitlines() if l.strip().startswith(name + " "))
            description = line.strip()[len(name):].strip()
            assert len(description) > 10 and "(no description)" not in description, line


def test_too_small_training_split_warns_with_the_minimum() -> None:
    with pytest.warns(UserWarning, match=r"training split has 3 images, below the minimum of 100 .*--max-train"):
        load_dataset("mnist5k", max_train=3)


def test_debug_shows_the_traceback_instead_of_one_line(tmp_path, capsys) -> None:
    assert main(["certify", "--run-dir", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="report.json' does not exist"):
        main(["certify", "--run-dir", str(tmp_path), "--debug"])
    with pytest.raises(FileNotFoundError):
        main(["--debug", "certify", "--run-dir", str(tmp_path)])


def test_an_unexpected_error_is_one_line_pointing_at_debug(monkeypatch, capsys) -> None:
    def broken(arguments):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(commands, "list_command", broken)
    assert main(["list"]) == 1
    error = capsys.readouterr().err
    assert error == "harp-prune: error: unexpected ZeroDivisionError: division by zero (rerun with --debug for the traceback)\n"
