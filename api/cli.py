"""The `glimpse` command. Each command imports its heavy modules itself, so --help is quick."""

import typer

from api.commands import data, domain, evaluate, labels, predict, scale, serve, train
from api.runtime import keep_freed_memory

app = typer.Typer(
    help="Glimpse: captions and answers about images, with where the model looked.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Glimpse: captions and answers about images, with where the model looked."""
    keep_freed_memory()


app.command()(predict.caption)
app.command()(predict.ask)
app.command()(labels.labels)
app.add_typer(data.app, name="data")
app.add_typer(domain.app, name="domain")
app.add_typer(train.app, name="train")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(scale.app, name="scale")
app.command()(serve.serve)


if __name__ == "__main__":
    app()
