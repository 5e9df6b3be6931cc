"""Property: any override either gives a valid config or one clear ConfigError line, never another exception."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maelab.config import Config, _all_keys, load_config
from maelab.errors import ConfigError
from maelab.models import resolve_spec

KEYS = _all_keys()
VALUES = st.one_of(
    st.integers(-5, 5000).map(str), st.floats(-2, 2, allow_nan=False).map(lambda f: f"{f:.3g}"),
    st.sampled_from(["true", "false", "null", "mae", "keras", "cifar10", "synthetic", "random", "linear", "[1,2]",
                     "{a: 1}", "", "nan", "inf", "-inf", "1e30"]),
    st.text(alphabet="abcxyz_.0123", min_size=1, max_size=8),
)
OVERRIDE = st.tuples(st.one_of(st.sampled_from(KEYS), st.text(alphabet="abcdefgmnoprstuz_.", min_size=1,
                                                              max_size=15)), VALUES).map("=".join)


@settings(derandomize=True, max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_overrides_give_a_config_or_one_clear_error(overrides):
    try:
        cfg = load_config(None, overrides)
        resolve_spec(cfg.model)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message
        return
    assert isinstance(cfg, Config)
