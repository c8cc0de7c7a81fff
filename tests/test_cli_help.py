"""The command line explains itself: every sub-command and option has a help line and shows its default."""

from __future__ import annotations

import argparse
import subprocess
import sys

from tissuegraph.cli import build_parser


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name), sub


def test_every_command_and_option_has_help():
    parser = build_parser()
    problems = []
    subs = list(_subparsers(parser))
    assert len(subs) >= 4
    for name, cmd_help, sub in subs:
        if not (cmd_help or "").strip():
            problems.append(f"{name}: no help line in 'tissuegraph --help'")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip():
                problems.append(f"tissuegraph {name} {label}: no help")
    assert not problems, "\n".join(problems)


def test_defaults_are_shown():
    parser = build_parser()
    for name, _, sub in _subparsers(parser):
        text = sub.format_help().replace("\n", " ")
        text = " ".join(text.split())
        for action in sub._actions:
            if not action.option_strings or action.required or isinstance(action, argparse._HelpAction):
                continue
            if action.default is None and "None" in (action.help or ""):
                continue
            assert f"(default: {action.default})" in text, f"tissuegraph {name} {action.option_strings}"


def test_top_level_help_lists_what_each_command_is_for():
    out = subprocess.run([sys.executable, "-m", "tissuegraph.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name, cmd_help, _ in _subparsers(build_parser()):
        assert name in out and cmd_help.split()[0] in out
