import numpy as np

from asyncsim.rng import BLOCK, StepDraws, Stream, generator


def sampler(g, n):
    return g.integers(0, 1000, (n, 4))


def test_step_draws_are_the_keyed_block_rows():
    draws = StepDraws(7, Stream.ALGORITHM, sampler)
    for worker, step in [(0, 0), (3, 5), (3, BLOCK + 2), (1, 5 * BLOCK - 1)]:
        block = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(int(Stream.ALGORITHM), worker, step // BLOCK)))
        expected = block.integers(0, 1000, (BLOCK, 4))[step % BLOCK]
        np.testing.assert_array_equal(draws(worker, step), expected)


def test_draws_do_not_depend_on_access_order():
    keys = [(w, s) for w in range(3) for s in range(0, 3 * BLOCK, 37)]
    a = StepDraws(1, Stream.COMPUTE, sampler)
    first = {k: a(*k).copy() for k in keys}
    b = StepDraws(1, Stream.COMPUTE, sampler)
    for k in reversed(keys):
        np.testing.assert_array_equal(b(*k), first[k])


def test_streams_workers_and_seeds_are_distinct():
    x = [generator(0, Stream.COMPUTE, 0, 0).random(), generator(0, Stream.UPLINK, 0, 0).random(),
         generator(0, Stream.COMPUTE, 1, 0).random(), generator(0, Stream.COMPUTE, 0, 1).random(),
         generator(1, Stream.COMPUTE, 0, 0).random()]
    assert len(set(x)) == len(x)


def test_a_limited_cache_gives_the_same_draws_and_keeps_at_most_its_limit():
    """A population's replay keeps the blocks of CACHED_WORKERS workers at most: dropping a block and making it
    again must change no draw."""
    sample = lambda g, n: g.random(n).tolist()  # noqa: E731
    full, limited = StepDraws(4, Stream.ALGORITHM, sample), StepDraws(4, Stream.ALGORITHM, sample, limit=3)
    rng = np.random.default_rng(0)
    for w, s in zip(rng.integers(0, 20, 2000).tolist(), rng.integers(0, 600, 2000).tolist()):
        assert limited(w, s) == full(w, s)
        assert len(limited._cache) <= 3
    assert len(full._cache) == 20
