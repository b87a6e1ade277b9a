"""Every option of every `icsnn` subcommand says what it does and what it defaults to."""
import argparse

from icsnn_core.cli import HelpFormatter, _parser


def test_every_option_has_help_with_its_default():
    parser = _parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subcommands) >= {"reproduce", "notebooks", "train", "evaluate"}
    for name, sub in subcommands.items():
        assert sub.formatter_class is HelpFormatter, name
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action)
            assert action.help, f"icsnn {name} {action.option_strings}: no help text"
            assert "default" in text or "(required)" in text, f"icsnn {name} {action.option_strings}: {text!r}"


def test_evaluate_help_shows_the_defaults_the_issue_named():
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    text = " ".join(sub.format_help().split())
    for shown in ("horizons T (default: 1 2 4 8 16 32 64)", "(default: printed)", "(default: raw)", "(default: layer)",
                  "Algorithm 2 (default: 128)", "1 = max (default: 0.99)"):
        assert shown in text, shown
