"""Seed example "Working with the REST API" (only the import line differs from Prefect's)."""
import asyncio

import requests

from distributary.client.orchestration import get_client


# Using PrefectClient
async def list_flows():
    client = get_client()
    flows = await client.read_flows(limit=5)
    for flow in flows:
        print(f"{flow.name}: {flow.id}")


# Using requests library with Prefect Cloud
def get_recent_artifacts():
    PREFECT_API_URL = "https://api.prefect.cloud/api/accounts/{account_id}/workspaces/{workspace_id}"
    PREFECT_API_KEY = "your-api-key"

    response = requests.post(
        f"{PREFECT_API_URL}/artifacts/filter",
        headers={"Authorization": f"Bearer {PREFECT_API_KEY}"},
        json={
            "sort": "CREATED_DESC",
            "limit": 5,
            "artifacts": {"key": {"exists_": True}}
        }
    )
    return response.json()


if __name__ == "__main__":
    asyncio.run(list_flows())
