"""Run under torchrun by tests/eval/test_distributed_eval.py: fine-tune and probe a run, write what they gave.

argv: RUN_DIR OUT_JSON BATCH_SIZE
"""

import json
import sys

from maelab.engine.distributed import distributed
from maelab.engine.loading import load_run
from maelab.eval.commands import run_probe
from maelab.eval.finetune import finetune

FINETUNE = ["finetune.epochs=2", "finetune.aug=none", "finetune.mixup=0", "finetune.cutmix=0",
            "finetune.drop_path=0", "finetune.lr=1e-3", "probe.epochs=3", "train.threads=1"]


def main(run_dir: str, out: str, batch_size: int) -> dict:
    overrides = [*FINETUNE, f"finetune.batch_size={batch_size}"]
    with distributed("cpu") as dist:
        run = load_run(run_dir, overrides=overrides)
        losses: list[float] = []
        metrics = finetune(run.model.spec, run.model.encoder.state_dict(), run.dataset(), run.cfg.finetune,
                           run.cfg.aug, run.cfg.train.seed, run.device, log=lambda r: losses.append(r["loss"]),
                           dist=dist)
        _, probe = run_probe(run_dir, overrides)
        result = {"finetune_losses": losses, "finetune_top1": metrics["top1"], "probe": probe["top1"],
                  "probe_top5": probe["top5"], "world_size": dist.world_size}
        if dist.is_main:
            with open(out, "w") as f:
                json.dump(result, f)
    return result


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
