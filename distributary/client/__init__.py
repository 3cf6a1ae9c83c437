"""The client of the run store (Prefect's `prefect.client`): `orchestration.get_client()`."""
