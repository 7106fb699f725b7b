"""``python -m ftkit COMMAND …``: the kit's command line, one subcommand per room that has one.

Each command lives in its own room's ``cli`` module and is imported only when it is asked for, so
``python -m ftkit --help`` stays fast and needs none of the commands' optional packages."""
from __future__ import annotations

import sys
from importlib import import_module

# command -> (module with a ``main(argv) -> int``, one line of help)
COMMANDS = {
    "sweep": ("ftkit.sweep.cli", "run a notebook over a grid or a search of its parameters (Optuna; local or Ray)"),
    "export": ("ftkit.export.cli", "write executed notebooks or a training run as a static site that needs no kernel"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m ftkit COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "python -m ftkit COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from difflib import get_close_matches
        near = get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        print(f"ftkit: unknown command {name!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    from .utils import skip_iri_grammar
    skip_iri_grammar()      # every command reads or runs notebooks: nbformat's import starts 2 s sooner
    return int(import_module(COMMANDS[name][0]).main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
