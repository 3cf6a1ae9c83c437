"""Seed example "Mapping Tasks Over Iterables" (only the import lines differ from Prefect's)."""
from distributary import flow, task, unmapped
from distributary.futures import wait


@task
def add_together(x: int, y: int) -> int:
    return x + y


@task
def multiply(x: int, factor: list[int]) -> int:
    return x * sum(factor)


@flow
def batch_operations():
    numbers = [1, 2, 3, 4, 5]

    # Map over numbers with a static value
    sums = add_together.map(numbers, 10)

    # Use unmapped for iterable arguments that shouldn't be mapped
    products = multiply.map(numbers, unmapped([2, 3]))

    wait(sums)
    wait(products)

    print(f"Sums: {sums.result()}")  # [11, 12, 13, 14, 15]
    print(f"Products: {products.result()}")  # [5, 10, 15, 20, 25]


if __name__ == "__main__":
    batch_operations()
