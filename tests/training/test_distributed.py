"""DDP on gloo: two ranks started apart end with the same weights, and rank 0 alone logs."""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tiny_runs import finish, headless, spawn, tensorboard_pictures

DDP_SCRIPT = """
import os, sys, torch
from pathlib import Path
from safetensors.torch import save_file
from training.config import load_config
from training.tasks import build_task
from training.loop import fit
cfg = load_config("vqa-shapes", sys.argv[3:])
torch.manual_seed(int(os.environ["RANK"]) + 1)  # ranks start apart: DDP must sync them
task = build_task(cfg, Path(sys.argv[1]))
fit(task, cfg, Path(sys.argv[2]))
rank = int(os.environ["RANK"])
save_file({k: v.contiguous() for k, v in task.model.state_dict().items()},
          f"{sys.argv[2]}/rank{rank}.safetensors")
"""


def test_ddp_ranks_hold_identical_weights(tiny_world: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    vqa = headless(
        'model={"d_model": 16, "embed_dim": 16, "question_dim": 16, "attn_dim": 8,'
        ' "classifier_dim": 16}',
        "epochs=1",
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    finish(
        spawn(
            [*command, "--nproc_per_node", "2", str(script), str(tiny_world), str(tmp_path), *vqa],
            PYTHONPATH=str(Path.cwd()),
        )
    )
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert (tmp_path / "model" / "answers.json").is_file()
    assert tensorboard_pictures(tmp_path) == {f"val/picture_{i}": 1 for i in range(3)}
