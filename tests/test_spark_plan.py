"""How many tasks read a detector's files on Spark (``pipeline.spark_plan.read_tasks``): at
least a bucket's worth, more as the Parquet grows, never more than the files."""

from __future__ import annotations

from pipeline.spark_plan import READ_TASK_BYTES, read_tasks


def plan(sizes: list[int]) -> list[tuple[str, int, int, int, int]]:
    return [(f"f{i}.parquet", size, 0, 1, i) for i, size in enumerate(sizes)]


def test_a_small_read_takes_a_task_per_bucket() -> None:
    assert read_tasks(plan([1000] * 50), 8) == 8


def test_a_read_never_has_more_tasks_than_files() -> None:
    assert read_tasks(plan([1000] * 3), 8) == 3
    assert read_tasks(plan([READ_TASK_BYTES * 4]), 8) == 1
    assert read_tasks([], 8) == 1


def test_the_tasks_grow_with_the_parquet_read_keeping_each_near_the_bound() -> None:
    # A 14-day history of hour files of 512 KB: 336 files, 168 MB.
    history = plan([512 << 10] * 336)
    tasks = read_tasks(history, 8)
    assert tasks == 21
    assert 336 * (512 << 10) / tasks <= READ_TASK_BYTES
    # Twice the events a file: twice the tasks.
    assert read_tasks(plan([1 << 20] * 336), 8) == 42


def test_a_file_of_unknown_size_counts_as_the_mean_of_the_known() -> None:
    known = [4 << 20] * 10
    assert read_tasks(plan(known + [-1] * 10), 2) == read_tasks(plan(known * 2), 2) == 10
    assert read_tasks(plan([-1] * 40), 8) == 8  # none known: a task per bucket
