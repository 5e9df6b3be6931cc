"""The loop's two random streams: generators made once, reseeded per step, drawing what new generators would."""

import torch

from maelab.engine.step import StepStreams, step_generators


def test_reseeded_generators_draw_exactly_what_new_ones_draw_at_every_step():
    streams = StepStreams(seed=3)
    made_once = streams.generators
    for step in (0, 1, 7, 1000):
        reused, fresh = streams.at(step), step_generators(3, step)
        assert reused is made_once  # no new generator objects on the step's path
        for a, b in ((reused.augment, fresh.augment), (reused.mask, fresh.mask)):
            assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))


def test_the_two_streams_differ_and_each_step_draws_anew():
    streams = StepStreams(seed=0)
    first = torch.rand(3, generator=streams.at(0).augment)
    assert not torch.equal(first, torch.rand(3, generator=streams.at(0).mask))
    assert not torch.equal(first, torch.rand(3, generator=streams.at(1).augment))
