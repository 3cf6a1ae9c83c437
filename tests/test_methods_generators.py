"""Tasks and flows on methods (static, class, instance) and generator tasks, as Prefect 3 supports them."""
from __future__ import annotations

from distributary import flow, task


class Pipeline:
    factor = 3

    def __init__(self, offset: int):
        self.offset = offset

    @task
    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @task
    @classmethod
    def scale(cls, x: int) -> int:
        return cls.factor * x

    @task
    def shift(self, x: int) -> int:
        return x + self.offset

    @flow
    @classmethod
    def run_class(cls, x: int) -> int:
        return cls.scale(x)

    @flow
    def run(self, x: int) -> list[int]:
        return [self.double(x), Pipeline.scale(x), self.shift(x), self.shift.submit(x).result()]


def test_tasks_and_flows_on_static_class_and_instance_methods():
    p = Pipeline(offset=10)
    assert p.run(2) == [4, 6, 12, 12]
    assert Pipeline.run_class(5) == 15
    assert Pipeline.double.with_options(name="d2").name == "d2"
    assert Pipeline.scale.with_options(retries=1)(1) == 3  # with_options keeps the classmethod binding


def test_a_generator_task_is_consumed_into_a_list():
    @task
    def numbers(n: int):
        yield from range(n)

    @task
    async def anumbers(n: int):
        for i in range(n):
            yield i

    @flow
    def f():
        return numbers(3), numbers.submit(2).result(), anumbers(2)

    assert f() == ([0, 1, 2], [0, 1], [0, 1])


def test_a_flow_returning_a_generator_returns_a_list():
    @flow
    def gen_flow():
        yield from "ab"

    assert gen_flow() == ["a", "b"]
