"""Pydantic models of what the run store holds, shared by the client, the CLI and the (future) server:
`objects` (Flow, FlowRun, TaskRun, Log, Artifact, Variable, State), `filters`, `sorting`, `actions`."""
