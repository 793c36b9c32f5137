"""Argument parsing, on jsonargparse, for every ``ser-mtl`` subcommand that is not LightningCLI's.

A **function command** gets its parser from its signature and its docstring's ``Args:`` (`command`);
a **forwarding command** (`ForwardingCommand`) parses its own group (``--cv.*``) and hands every other
argument to LightningCLI unchanged. A list option takes the tokens up to the next ``--option``, one
value or a JSON/YAML list. A bad option prints one line naming it and exits with status 2, as argparse
does. `CommandParser` notes which options take lists as they are added (jsonargparse cannot tell later).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sys
import types
import typing
from collections import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from jsonargparse import ArgumentParser

if TYPE_CHECKING:
    from argparse import Action

    from jsonargparse import Namespace

_SPEC_ATTRIBUTE = "__ser_mtl_command__"
ExceptionTypes = tuple[type[BaseException], ...]


class _CommandSpec(NamedTuple):
    positional: str | None = None
    errors: ExceptionTypes = ()


def command(*, positional: str | None = None, errors: ExceptionTypes = ()) -> Callable:
    """Mark a function as a command: ``positional`` names the ``list[...]`` parameter that takes the bare
    arguments, ``errors`` the exception types reported as ``prog: message`` with exit status 1."""
    def mark(function: Callable) -> Callable:
        setattr(function, _SPEC_ATTRIBUTE, _CommandSpec(positional, tuple(errors)))
        return function
    return mark


def _spec(function: Callable) -> _CommandSpec:
    return getattr(function, _SPEC_ATTRIBUTE, _CommandSpec())


class CommandParser(ArgumentParser):
    """A jsonargparse parser that records, as options are added with ``add_argument`` or
    ``add_function_arguments`` (not through a group), each dest's option strings (``option_strings``,
    ``cv.out`` -> ``["--cv.out"]``) and which take lists (``list_options``: option string -> first one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.option_strings: dict[str, list[str]] = {}  # set before argparse adds -h/--help in __init__
        self.list_options: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> Action:
        action = super().add_argument(*args, **kwargs)
        if action is not None and action.option_strings:
            self._note(action.dest, list(action.option_strings), kwargs.get("type"))
        return action

    def add_function_arguments(self, function: Callable, nested_key: str | None = None, *args: Any,
                               **kwargs: Any) -> list[str]:
        added = super().add_function_arguments(function, nested_key, *args, **kwargs)
        hints = typing.get_type_hints(function)
        # option strings noted if added through `add_argument` (as_group=False), else ``--nested.name``
        for dest in added:
            self._note(dest, [f"--{dest}"], hints.get(dest.rpartition(".")[2]))
        return added

    def _note(self, dest: str, option_strings: list[str], hint: Any) -> None:
        known = self.option_strings.setdefault(dest, option_strings)
        if _is_sequence_type(hint):
            self.list_options.update(dict.fromkeys(known, known[0]))


def new_parser(prog: str, description: str | None = None) -> CommandParser:
    """A `CommandParser` that raises ``ArgumentError`` instead of exiting (``parse`` reports it)."""
    return CommandParser(prog=prog, description=description, exit_on_error=False)


def function_parser(function: Callable, prog: str) -> CommandParser:
    """The parser of a function command: one option per parameter, help from the ``Args:`` docstring."""
    import docstring_parser

    doc = docstring_parser.parse(inspect.getdoc(function) or "")
    parser = new_parser(prog, "\n\n".join(filter(None, (doc.short_description, doc.long_description))))
    positional = _spec(function).positional
    if positional is not None:
        hint = typing.get_type_hints(function)[positional]
        if typing.get_origin(hint) is not list:
            raise TypeError(f"{function.__qualname__}: positional parameter {positional!r} must be a list[...]")
        help_text = next((p.description for p in doc.params if p.arg_name == positional), None)
        parser.add_argument(positional, nargs="+", type=typing.get_args(hint)[0], help=help_text)
    parser.add_function_arguments(function, as_group=False, skip={positional} if positional else None)
    _add_list_epilog(parser)
    return parser


def parse_function_args(function: Callable, argv: list[str], prog: str) -> dict[str, Any]:
    """The keyword arguments ``argv`` gives ``function`` (``SystemExit(2)`` with one line if it cannot)."""
    parser = function_parser(function, prog)
    namespace = parser.instantiate_classes(parse(parser, argv, prog))
    return {name: namespace[name] for name in inspect.signature(function).parameters}


def run_function(function: Callable, argv: list[str], prog: str) -> Any:
    """Parse ``argv`` for ``function``, call it and return what it returns."""
    kwargs = parse_function_args(function, argv, prog)
    with exit_on(prog, _spec(function).errors):
        return function(**kwargs)


def split_argv(argv: list[str], prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into the options starting with one of ``prefixes`` (with their values: the tokens up
    to the next ``--option``, or what follows ``=``) plus ``-h``/``--help``, and every other argument."""
    mine: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        if arg in ("-h", "--help"):
            mine.append(arg)
        elif arg.startswith(prefixes):
            mine.append(arg)
            while "=" not in arg and i < len(argv) and not _is_option(argv[i]):
                mine.append(argv[i])
                i += 1
        else:
            rest.append(arg)
    return mine, rest


@dataclass(frozen=True)
class ForwardingCommand:
    """A command with its own ``--<group>.*`` options whose other arguments go to LightningCLI unchanged;
    called without arguments it shows the help.

    Attributes:
        prog: the command line shown in help and errors (``ser-mtl cv``).
        prefixes: the group options' prefixes (``("--cv.",)``); empty when every argument is forwarded.
        run: ``run(options, forwarded)`` does the work with the parsed group and the other arguments.
        description: first paragraph of ``--help``.
        add_options: adds the group options to a `CommandParser` (None: the command has none).
        errors: exception types reported as ``prog: message`` with exit status 1.
    """

    prog: str
    prefixes: tuple[str, ...]
    run: Callable[[Namespace, list[str]], Any]
    description: str
    add_options: Callable[[CommandParser], None] | None = None
    errors: ExceptionTypes = ()

    def parser(self) -> CommandParser:
        """The parser of the group options, with an epilog saying where the other arguments go."""
        parser = new_parser(self.prog, self.description)
        if self.add_options is not None:
            self.add_options(parser)
        _add_list_epilog(parser)
        forwarded = (f"Arguments not starting with {' or '.join(self.prefixes)} go" if self.prefixes
                     else "Every argument goes")
        parser.epilog = " ".join(filter(None, (
            f"{forwarded} to LightningCLI unchanged (--config FILE --model.alpha 0.3 ...).", parser.epilog)))
        return parser

    def __call__(self, argv: list[str]) -> Any:
        mine, forwarded = split_argv(argv or ["--help"], self.prefixes)
        options = parse(self.parser(), mine, self.prog)
        with exit_on(self.prog, self.errors):
            return self.run(options, forwarded)


def run_command(target: Callable, argv: list[str], prog: str) -> Any:
    """Run a registered command: a ``ForwardingCommand`` (which has its own prog) or a function command."""
    if isinstance(target, ForwardingCommand):
        return target(argv)
    return run_function(target, argv, prog)


def parse(parser: CommandParser, argv: list[str], prog: str) -> Namespace:
    """``parser.parse_args`` with natural lists; a bad argument prints one line and exits with status 2."""
    from argparse import ArgumentError

    try:
        return parser.parse_args(expand_lists(parser, argv))
    except ArgumentError as err:
        print(f"{prog}: error: {_one_line(parser, str(err))} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def exit_on(prog: str, errors: ExceptionTypes) -> Iterator[None]:
    """Turn the listed exceptions into ``prog: message`` on stderr and exit status 1."""
    try:
        yield
    except (*errors, OSError) as err:  # a full disk: one line saying what failed and that a re-run resumes
        from ser_mtl.io_utils import DiskFullError, disk_full_message, is_disk_full

        if not isinstance(err, errors) and not is_disk_full(err):
            raise
        print(f"{prog}: {err if isinstance(err, (*errors, DiskFullError)) else disk_full_message(err)}",
              file=sys.stderr)
        raise SystemExit(1) from err


def _is_option(token: str) -> bool:
    """``--name`` or ``-h``; a token with whitespace is a value even if it starts with ``--`` (an option
    holding other arguments, ``--cv.pretrain "--config p.yaml --data.root X"``, as the shell passes it)."""
    return (token.startswith("--") and not any(c.isspace() for c in token)) or token == "-h"


def _is_sequence_type(hint: Any) -> bool:
    """``list[X]``, ``tuple[...]``, ``Sequence[X]``, or one of them ``| None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hints = [h for h in typing.get_args(hint) if h is not type(None)]
        hint = hints[0] if len(hints) == 1 else None
    return typing.get_origin(hint) in (list, tuple, abc.Sequence)


def expand_lists(parser: CommandParser, argv: list[str]) -> list[str]:
    """``argv`` with each list option's natural form rewritten into what jsonargparse reads: ``--x a b``
    (``--x a``, ``--x=a``) becomes ``--x '["a", "b"]'``; a single ``[...]`` or ``null`` value is kept."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        name, eq, first = arg.partition("=")
        if name not in parser.list_options:
            out.append(arg)
            continue
        values = [first] if eq else []
        while not eq and i < len(argv) and not _is_option(argv[i]):
            values.append(argv[i])
            i += 1
        if not values:  # let jsonargparse say that the option needs a value
            out.append(name)
        elif len(values) == 1 and (values[0].lstrip().startswith("[") or values[0] == "null"):
            out += [name, values[0]]
        else:
            out += [name, json.dumps(values)]
    return out


def _add_list_epilog(parser: CommandParser) -> None:
    lists = sorted(set(parser.list_options.values()))
    if lists:
        example = lists[0]
        parser.epilog = (f"List options ({', '.join(lists)}) take several values ({example} A B), one value "
                         f"({example} A) or a JSON list ({example} '[A, B]').")


def _one_line(parser: CommandParser, message: str) -> str:
    """jsonargparse's error message on one line, naming options as they are typed (``--cv.out``)."""
    by_dest = {dest: strings[0] for dest, strings in parser.option_strings.items()}
    key = re.match(r'Parser key "([^"]+)":\s*', message)
    if key:
        message = f"{by_dest.get(key.group(1), key.group(1))}: {message[key.end():]}"
    required = re.match(r"the following arguments are required: (.*)", message)
    if required:
        names = [by_dest.get(n.strip(), n.strip()) for n in required.group(1).split(",")]
        message = f"the following arguments are required: {', '.join(names)}"
    return " ".join(message.split())
