"""Sharing tasks among torchrun processes: order, uneven rounds, errors from any rank, counts, too many processes."""

from __future__ import annotations

import pytest

from pipeline.core.errors import InputError
from pipeline.core.ranks import ALONE, Ranks, check_share, ordered_map, sum_counts


def test_alone_runs_every_task_in_order():
    assert list(ordered_map(lambda t: t * t, 5)) == [(t, t * t) for t in range(5)]
    assert sum_counts({"a": 3}) == {"a": 3}


def test_more_processes_than_tasks_is_refused_with_the_fix():
    check_share(3, Ranks(0, 3), "batches", "lower synthetic.batch")
    with pytest.raises(InputError, match=r"4 processes .* for 3 batches.*lower synthetic.batch"):
        check_share(3, Ranks(2, 4), "batches", "lower synthetic.batch")
    check_share(1, ALONE, "batches", "")


def _worker(rank: int, world: int, init: str, fail_at: int, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    ranks = Ranks(rank, world)
    ran = []

    def fn(t):
        ran.append(t)
        if t == fail_at:
            raise InputError(f"task {t} is bad")
        return {"t": t, "rank": rank}

    try:
        got = list(ordered_map(fn, 7, ranks))
        counts = sum_counts({"n": len(ran), "rank": rank}, ranks)
        out.put((rank, "ok", got, ran, counts))
    except InputError as e:
        out.put((rank, "error", str(e), ran, None))
    except SystemExit as e:
        out.put((rank, "exit", e.code, ran, None))


def _run(tmp_path, world: int, fail_at: int = -1) -> dict:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    init = f"file://{tmp_path / f'store{fail_at}'}"
    procs = [ctx.Process(target=_worker, args=(r, world, init, fail_at, out)) for r in range(world)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        rank, *rest = out.get(timeout=120)
        results[rank] = rest
    for p in procs:
        p.join(timeout=60)
    return results


def test_two_ranks_share_tasks_round_robin_and_rank_0_gets_them_in_order(tmp_path):
    res = _run(tmp_path, 2)
    status0, got, ran0, counts = res[0]
    status1, got1, ran1, _ = res[1]
    assert status0 == status1 == "ok"
    assert [t for t, _ in got] == list(range(7))  # 7 tasks: the last round is uneven
    assert [v["rank"] for _, v in got] == [t % 2 for t in range(7)]
    assert ran0 == [0, 2, 4, 6] and ran1 == [1, 3, 5] and got1 == []
    assert counts == {"n": 7, "rank": 1}


def test_a_failed_task_on_another_rank_stops_every_rank_and_rank_0_raises_it(tmp_path):
    res = _run(tmp_path, 2, fail_at=3)  # task 3 runs on rank 1, in round 2
    assert res[0][:2] == ["error", "task 3 is bad"]
    assert res[1][:2] == ["exit", 2]
    assert res[0][2] == [0, 2] and res[1][2] == [1, 3]  # nobody went on to round 3
