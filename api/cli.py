"""The `glimpse` command. Each command imports its heavy modules itself, so --help is quick."""

import typer

from api.commands import predict, train

app = typer.Typer(
    help="Glimpse: captions and answers about images, with where the model looked.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(predict.caption)
app.command()(predict.ask)
app.add_typer(train.app, name="train")


if __name__ == "__main__":
    app()
