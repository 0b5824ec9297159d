"""How every `glimpse` command fails: one line on stderr and exit code 2, never a traceback."""

import typer


def fail(problem: str | Exception) -> typer.Exit:
    """Print `problem` and return the exit to raise: `raise fail(...) from exc`."""
    typer.echo(f"error: {problem}", err=True)
    return typer.Exit(code=2)
