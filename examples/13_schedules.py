"""Seed example "Scheduling with Cron, Interval, and RRule" (only the import line differs from Prefect's)."""
from distributary import flow


@flow
def scheduled_flow():
    print("Running on schedule")


if __name__ == "__main__":
    # Cron schedule - runs at 9 AM on weekdays
    scheduled_flow.serve(
        name="cron-deployment",
        cron="0 9 * * MON-FRI",
        timezone="America/New_York"
    )

    # Interval schedule - runs every 30 minutes
    # Can use seconds, ISO 8601 duration, or time format
    scheduled_flow.serve(
        name="interval-deployment",
        interval=1800  # 30 minutes in seconds
        # Or: interval="PT30M" (ISO 8601)
        # Or: interval="00:30:00" (time format)
    )

    # RRule schedule - complex calendar logic
    # Last weekday of each month
    scheduled_flow.serve(
        name="rrule-deployment",
        rrule="FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"
    )
