"""Property through the CLI: `maelab pretrain` with any config overrides either trains or exits with one clear
error line, never a traceback or another exception (maelab.cli.main in-process, a tiny synthetic run)."""

import contextlib
import io
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maelab.cli import main
from maelab.config import _all_keys

# pinned after the drawn overrides: the run stays one small epoch on the synthetic set, offline, in a temp folder
PINNED = ["optim.epochs=1", "data.name=synthetic", "data.download=false", "train.progress=false",
          "train.tensorboard=false", "overwrite=false"]
# keys the pins own, or that only change where files go or how many threads run
FREE_KEYS = [k for k in _all_keys() if k not in {p.split("=")[0] for p in PINNED} and "." in k and k.split(".")[0]
             not in ("probe", "knn", "finetune", "recon") and k not in ("data.root", "data.cache_dir", "data.url",
                                                                        "train.threads", "train.stop_after_epochs")]
VALUES = st.one_of(  # small sizes only: a drawn model or dataset must stay cheap to train for one epoch
    st.integers(-2, 70).map(str), st.floats(-2, 2, allow_nan=False).map(lambda f: f"{f:.3g}"),
    st.sampled_from(["true", "false", "null", "micro", "keras", "random", "linear", "step", "hinge", "cuda",
                     "fp16", "bf16", "skip", "[1,2]", "{a: 1}", "", "nan", "inf", "-inf", "1e30", "0", "1"]),
    st.text(alphabet="abcxyz_.0123", min_size=1, max_size=6),
)
OVERRIDE = st.tuples(st.one_of(st.sampled_from(FREE_KEYS), st.text(alphabet="abcdegmnoprst_.", min_size=1,
                                                                   max_size=12)), VALUES).map("=".join)
BASE = ["data.synthetic_train=96", "data.synthetic_test=32", "model.preset=micro", "optim.batch_size=32",
        "train.log_every=1"]


@settings(derandomize=True, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_pretrain_runs_or_exits_with_one_clear_line(overrides):
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        code = main(["pretrain", *BASE, *overrides, *PINNED, f"out_dir={tmp}/run"])
    text = err.getvalue()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("maelab: error: ")]
    if code == 0:
        assert errors == []
        return
    assert len(errors) == 1 and text.strip().splitlines()[-1] == errors[0], text
    assert code == 2 or (code == 1 and "non-finite" in errors[0]), (code, text)
